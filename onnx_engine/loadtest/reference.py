"""Expected answers from the model run in-process, and the check of a server's answer."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from onnx_engine.loadtest.protocols import task_answers
from onnx_engine.serving.tasks.answers import TaskAnswers


@dataclass(frozen=True)
class Reference:
    """What each text must get back from a ``task`` model."""

    expected: dict[str, Any]
    task: str

    @cached_property
    def answers(self) -> TaskAnswers:
        """The task's rule for "the same"."""
        return task_answers(self.task)

    def matches(self, text: str, answer: Any) -> bool:
        return self.answers.matches(answer, self.expected[text])


def build_reference(model: Any, texts: list[str], parameters: dict[str, Any]) -> Reference:
    """Answer every distinct text in-process, one call per text.

    ``parameters`` are the request's: ``function_to_apply`` for a classifier, generation
    settings for text2text; none for embeddings (normalized as the model does).
    """
    answers = task_answers(model.task)
    expected = {text: answers.expected(model, text, parameters) for text in dict.fromkeys(texts)}
    return Reference(expected, model.task)


def answer(model: Any, text: str, parameters: dict[str, Any]) -> Any:
    """The comparable answer for one text from one in-process call (as a client would call)."""
    return task_answers(model.task).expected(model, text, parameters)
