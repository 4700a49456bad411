"""One handler per served task, chosen by the loaded engine model's ``task``.

To serve a new task: write ``tasks/<task>.py`` with a :class:`TaskHandler` subclass (and the
:class:`~onnx_engine.serving.tasks.answers.TaskAnswers` a client reads its answers with), and
register both, with any routes module beyond V2 and Hugging Face, in
:data:`onnx_engine.tasks.TASKS`.
"""

from __future__ import annotations

from typing import Any

from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.tasks.base import TaskHandler
from onnx_engine.tasks import app_task


def handler_for(model: Any, config: ServeConfig) -> TaskHandler:
    """The handler serving ``model`` (an engine model with a ``task`` attribute).

    Raises:
        TaskMismatchError: no handler serves that task.
    """
    return app_task(getattr(model, "task", None), "serve").handler_class()(model, config)
