"""Request bodies and answer parsing for the protocols the load test speaks.

Every task speaks V2 and Hugging Face; some speak more (``openai``: the OpenAI embeddings API,
``POST /v1/embeddings``). What a task's answers look like, and when two of them are the same,
is the task's :class:`~onnx_engine.serving.tasks.answers.TaskAnswers`, found in
:data:`onnx_engine.tasks.TASKS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from engine.errors import InputError
from onnx_engine.serving.tasks.answers import TaskAnswers, Wire
from onnx_engine.tasks import TASKS, app_task

COMMON_PROTOCOLS = ("v2", "hf")


def task_answers(task: str) -> TaskAnswers:
    """How the load test asks ``task`` models and checks their answers.

    Raises:
        TaskMismatchError: no task entry names ``task``.
    """
    return app_task(task, "load-test").answers_class()()


def task_protocols() -> dict[str, Wire]:
    """The protocols some tasks speak beyond V2 and Hugging Face, by name."""
    return {name: wire for entry in TASKS.values()
            for name, wire in entry.answers_class().protocols.items()}


def protocol_names() -> tuple[str, ...]:
    """V2, Hugging Face, then every task's own protocols (``--protocol``'s choices)."""
    return (*COMMON_PROTOCOLS, *task_protocols())


@dataclass(frozen=True)
class Protocol:
    """How to ask ``model`` (of ``task``) for one text and read its answer."""

    name: str
    task: str
    model: str
    parameters: dict[str, Any]

    def __post_init__(self) -> None:
        others = task_protocols()
        if self.name not in (*COMMON_PROTOCOLS, *others):
            names = ", ".join((*COMMON_PROTOCOLS, *others))
            raise InputError(f"--protocol must be one of {names}, got {self.name!r}.")
        answers = self.answers  # refuses, now, a task the load test cannot check
        if self.name in others and self.name not in answers.protocols:
            raise InputError(
                f"--protocol {self.name} speaks the {others[self.name].api} API; '{self.model}' "
                f"is a {self.task} model (use --protocol hf or v2)."
            )

    @cached_property
    def answers(self) -> TaskAnswers:
        return task_answers(self.task)

    @cached_property
    def _wire(self) -> Wire | None:
        return self.answers.protocols.get(self.name)

    @property
    def path(self) -> str:
        if self._wire is not None:
            return self._wire.path
        return f"/v2/models/{self.model}/infer" if self.name == "v2" else f"/models/{self.model}"

    def body(self, text: str) -> dict[str, Any]:
        if self._wire is not None:
            return self._wire.body(self.model, text)
        if self.name == "hf":
            return self.answers.hf_body(text, self.parameters)
        return self.answers.v2_body(text, self.parameters)

    def answer(self, body: Any) -> Any:
        """The comparable answer in a 200 response body (KeyError/IndexError/TypeError/ValueError
        if the body has another shape, which the runner counts as a wrong answer)."""
        if self._wire is not None:
            return self._wire.answer(body)
        if self.name == "hf":
            return self.answers.from_hf(body)
        return self.answers.from_v2({output["name"]: output["data"] for output in body["outputs"]})
