"""What a failed request answers: one JSON shape, one HTTP status per kind of failure.

Every failure the server reports is a :class:`ServeError` carrying its status and
``error_type``, so routes raise and one handler writes ``{"error": msg, "error_type": ...}``.
``engine.InputError`` is a client's bad input too: it becomes 422 with the engine's message.
"""

from __future__ import annotations

from engine.errors import OnnxEngineError


class ServeError(OnnxEngineError):
    """A request the server cannot answer with a result; ``status`` is its HTTP status."""

    status = 500
    error_type = "backend"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class ValidationError(ServeError):
    """The request is malformed or its values are out of range (422)."""

    status = 422
    error_type = "validation"


class UnusedModelKwargsError(ValidationError):
    """Generation parameters the model does not know (400, worded as transformers words it).

    ``huggingface_hub`` recognizes this exact message and retries without the named parameters.
    """

    status = 400

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"The following `model_kwargs` are not used by the model: {names}")


class NotFoundError(ServeError):
    """No model of that name, or no such route for the model's task (404)."""

    status = 404
    error_type = "validation"


class PayloadTooLargeError(ServeError):
    """The body is over ``max_body_bytes`` (413)."""

    status = 413
    error_type = "validation"


class UnauthorizedError(ServeError):
    """The API key is missing or wrong (401). The message never repeats what was sent."""

    status = 401
    error_type = "unauthorized"


class OverloadedError(ServeError):
    """The concurrency budget is spent (429 with ``Retry-After``): fail fast, never queue more."""

    status = 429
    error_type = "overloaded"


class UnavailableError(ServeError):
    """Models are still loading, or the server is draining for shutdown (503)."""

    status = 503
    error_type = "unavailable"


class RequestTimeoutError(ServeError):
    """The request was not answered within ``request_timeout_s`` (504)."""

    status = 504
    error_type = "timeout"


class ClientDisconnectedError(ServeError):
    """The client went away before its answer was ready; its texts were dropped (499, unsent)."""

    status = 499
    error_type = "cancelled"


class BackendError(ServeError):
    """The engine failed on input it accepted (500); the message says what failed."""
