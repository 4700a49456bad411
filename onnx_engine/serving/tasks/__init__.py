"""One handler per served task, chosen by the loaded engine model's ``task``.

To serve a new task: write ``tasks/<task>.py`` with a :class:`TaskHandler` subclass, add it to
:data:`HANDLERS`, and, for routes beyond V2 and Hugging Face, add a routes module to
``onnx_engine.serving.app.ROUTE_MODULES``.
"""

from __future__ import annotations

from typing import Any

from engine.errors import TaskMismatchError
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.tasks.base import TaskHandler
from onnx_engine.serving.tasks.classification import ClassificationHandler
from onnx_engine.serving.tasks.embedding import EmbeddingHandler
from onnx_engine.serving.tasks.reranking import RerankingHandler
from onnx_engine.serving.tasks.text2text import Text2TextHandler

HANDLERS: dict[str, type[TaskHandler]] = {
    handler.task: handler
    for handler in (ClassificationHandler, Text2TextHandler, EmbeddingHandler, RerankingHandler)
}


def handler_for(model: Any, config: ServeConfig) -> TaskHandler:
    """The handler serving ``model`` (an engine model with a ``task`` attribute).

    Raises:
        TaskMismatchError: no handler serves that task.
    """
    task = getattr(model, "task", None)
    if task not in HANDLERS:
        raise TaskMismatchError(
            f"The server cannot serve a '{task}' model; it serves {', '.join(sorted(HANDLERS))}."
        )
    return HANDLERS[task](model, config)
