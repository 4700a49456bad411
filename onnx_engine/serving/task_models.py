"""Which served model answers a task's own route (TEI ``/embed``, ``/rerank``, OpenAI, Cohere).

Those protocols address a task, not a server: a body that names no model (TEI) gets the one
model of the task, a body that names one (OpenAI, Cohere) must name a model of that task. Every
task's routes module picks its model here, so the refusals read the same on every route.
"""

from __future__ import annotations

from onnx_engine.serving.errors import NotFoundError, ValidationError
from onnx_engine.serving.state import ServedModel, ServerState


def task_model_names(state: ServerState, task: str) -> list[str]:
    """The names of the served models of ``task``, sorted."""
    return sorted(name for name, served in state.models.items() if served.handler.task == task)


def named_task_model(state: ServerState, name: str, task: str, route: str) -> ServedModel:
    """The served model ``name``, which must be a ``task`` model for ``route``.

    Raises:
        UnavailableError: models still loading, or the server is draining.
        NotFoundError: no such model, or one of another task (the message lists this task's).
    """
    served = state.model(name)
    if served.handler.task != task:
        names = ", ".join(task_model_names(state, task)) or "none here"
        raise NotFoundError(
            f"Model '{name}' is a {served.handler.task} model; {route} serves {task} models "
            f"({names})."
        )
    return served


def only_task_model(state: ServerState, task: str, route: str, named_route: str) -> ServedModel:
    """The one ``task`` model of the server, for a ``route`` whose body names no model;
    ``named_route`` is the route that takes a ``"model"`` (the advice when there are several).

    Raises:
        UnavailableError: models still loading, or the server is draining.
        NotFoundError: the server has no ``task`` model.
        ValidationError: it has several.
    """
    state.check_serving()
    names = task_model_names(state, task)
    if not names:
        raise NotFoundError(f"This server has no {task} model to serve {route}.")
    if len(names) > 1:
        raise ValidationError(
            f"This server has several {task} models ({', '.join(names)}) and {route} names "
            f'none; use {named_route} with "model", or /v2/models/NAME/infer.'
        )
    return state.models[names[0]]
