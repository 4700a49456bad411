"""The top layer's tasks: one :class:`AppTask` per task name, registered in :data:`TASKS` only.

A task is served by a handler (``onnx_engine/serving/tasks/<task>.py``, which also says how a
client reads its answers, for the load test), benchmarked by its contenders
(``onnx_engine/bench/contenders/<task>.py``) and run from the CLI by its commands
(``onnx_engine/commands/<command>.py``). Adding a task is those modules plus one line here.

Every reference is a ``"module:attribute"`` string, imported only by the layer that uses it:
the CLI lists its commands without importing the server, and the server finds its handler
without importing the benchmark's contenders.

Raises (every lookup): :class:`TaskMismatchError` for a task no entry names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from engine.errors import TaskMismatchError
from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT

if TYPE_CHECKING:  # for the annotations only: the table imports none of its modules up front
    from onnx_engine.bench.contenders.base import Contender
    from onnx_engine.serving.tasks.answers import TaskAnswers
    from onnx_engine.serving.tasks.base import TaskHandler

_SERVING = "onnx_engine.serving"
_CONTENDERS = "onnx_engine.bench.contenders"


@dataclass(frozen=True)
class AppTask:
    """What the top layer holds for one task.

    Attributes:
        handler: the serving ``TaskHandler`` subclass (``"module:Class"``).
        answers: the ``TaskAnswers`` class: how the load test asks and checks its answers.
        contenders: the tuple of bench ``Contender`` classes (``"module:NAME"``).
        commands: ``onnx_engine.commands`` modules of the task; the first runs its artifacts
            (named by messages that send a user to the right subcommand).
        routes: modules with ``routes(state)`` for protocols beyond V2 and Hugging Face.
        torch_reference: the PyTorch fp32 contender the engine's variants are compared with
            in the benchmark's agreement check.
    """

    handler: str
    answers: str
    contenders: str
    commands: tuple[str, ...]
    routes: tuple[str, ...] = ()
    torch_reference: str = "pytorch"

    def handler_class(self) -> type[TaskHandler]:
        handler: type[TaskHandler] = _resolve(self.handler)
        return handler

    def answers_class(self) -> type[TaskAnswers]:
        answers: type[TaskAnswers] = _resolve(self.answers)
        return answers

    def contender_classes(self) -> tuple[type[Contender], ...]:
        return tuple(_resolve(self.contenders))

    def route_modules(self) -> tuple[ModuleType, ...]:
        return tuple(importlib.import_module(name) for name in self.routes)


TASKS: dict[str, AppTask] = {
    TASK_CLASSIFICATION: AppTask(
        f"{_SERVING}.tasks.classification:ClassificationHandler",
        f"{_SERVING}.tasks.classification:ClassificationAnswers",
        f"{_CONTENDERS}.classification:CLASSIFIER_CONTENDERS", ("classify",)),
    TASK_TEXT2TEXT: AppTask(
        f"{_SERVING}.tasks.text2text:Text2TextHandler",
        f"{_SERVING}.tasks.text2text:Text2TextAnswers",
        f"{_CONTENDERS}.seq2seq:SEQ2SEQ_CONTENDERS", ("generate", "logits")),
    TASK_FEATURE_EXTRACTION: AppTask(
        f"{_SERVING}.tasks.embedding:EmbeddingHandler",
        f"{_SERVING}.tasks.embedding:EmbeddingAnswers",
        f"{_CONTENDERS}.embedding:EMBEDDING_CONTENDERS", ("embed", "search"),
        routes=(f"{_SERVING}.embedding_routes",), torch_reference="sentence-transformers"),
    # engine.tasks.token_classification.TASK_TOKEN_CLASSIFICATION, spelled out: importing it
    # here would load ONNX Runtime at every CLI start.
    "token-classification": AppTask(
        f"{_SERVING}.tasks.token_classification:TokenClassificationHandler",
        f"{_SERVING}.tasks.token_classification:TokenClassificationAnswers",
        f"{_CONTENDERS}.token_classification:TOKEN_CLASSIFICATION_CONTENDERS", ("ner",)),
    "text-ranking": AppTask(
        f"{_SERVING}.tasks.reranking:RerankingHandler",
        f"{_SERVING}.tasks.reranking:RerankingAnswers",
        f"{_CONTENDERS}.reranking:RERANKING_CONTENDERS", ("rerank",),
        routes=(f"{_SERVING}.rerank_routes",), torch_reference="sentence-transformers"),
}


def app_task(task: str | None, doing: str = "run") -> AppTask:
    """The entry of ``task``; ``doing`` words the refusal (``"serve"``, ``"load-test"``).

    Raises:
        TaskMismatchError: no entry for ``task``.
    """
    if task not in TASKS:
        raise TaskMismatchError(
            f"onnx-engine cannot {doing} a '{task}' model; it {doing}s "
            f"{', '.join(sorted(TASKS))}."
        )
    return TASKS[task]


def task_commands() -> tuple[str, ...]:
    """Every task's CLI command modules, in table order."""
    return tuple(command for entry in TASKS.values() for command in entry.commands)


def _resolve(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
