"""The ASGI app: routes of every protocol over one :class:`ServerState`.

``build_app(config, models)`` is a plain function of the settings and the models, so the same
app runs under ``onnx-engine serve`` (uvicorn) or inside another host's replica (e.g. Ray Serve's
``@serve.ingress``), where it builds its own batchers on that replica's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.errors import InputError
from onnx_engine.serving import hf_routes, v2_routes
from onnx_engine.serving.auth import ApiKeyMiddleware
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import ServeError, UnavailableError, ValidationError
from onnx_engine.serving.metrics import CONTENT_TYPE, ServerMetrics
from onnx_engine.serving.state import ServerState
from onnx_engine.tasks import TASKS

logger = logging.getLogger(__name__)
# Each module has routes(state) -> list[Route]: these serve every task; a task's own protocols
# (OpenAI embeddings, say) are the routes modules of its onnx_engine.tasks entry.
ROUTE_MODULES = (v2_routes, hf_routes)
Models = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
# Another listener over the same state, run for the app's lifetime (e.g. grpc_service.GrpcListener
# .serving): it starts with the app and drains before the batchers close.
Alongside = Callable[[ServerState], contextlib.AbstractAsyncContextManager[None]]


def build_app(config: ServeConfig, models: Models, alongside: Alongside | None = None) -> Starlette:
    """The server app for ``models``: name -> loaded engine model, or a function that loads them.

    With a function, loading runs in a worker thread after startup, and readiness answers 503
    until it is done (liveness answers at once). The batchers start in the app's lifespan, so
    the host must run it (uvicorn and Ray Serve's ingress do; a parent app that mounts this
    one does not). ``app.state.serving`` is the :class:`ServerState` (the SIGTERM hook sets
    its ``draining``). ``alongside`` serves the same state on another listener (gRPC) while
    the app runs.
    """
    metrics = ServerMetrics()
    state = ServerState(config, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = None
        if callable(models):
            loading = asyncio.get_running_loop().create_task(_load(state, models))
        else:
            state.install(models)
        async with alongside(state) if alongside else contextlib.nullcontext():
            yield
            state.begin_drain()
        if loading is not None:
            loading.cancel()
        await state.close()

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def health(request: Request) -> Response:  # TEI's and k8s-style probe
        state.check_serving()
        return Response(status_code=200)

    routes = [Route("/metrics", metrics_route, methods=["GET"]),
              Route("/health", health, methods=["GET"])]
    for module in (*ROUTE_MODULES, *(m for task in TASKS.values() for m in task.route_modules())):
        routes += module.routes(state)

    def error_response(error: Exception, scope: Any) -> Response:
        model = (scope.get("path_params") or {}).get("name", "")
        return error_json_response(counted_failure(state, model, error))

    middleware = []
    if config.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Inference-Header-Content-Length"],
            expose_headers=["x-queue-time", "x-inference-time", "x-total-time",
                            "Inference-Header-Content-Length"],
        ))
    if config.api_key is not None:
        middleware.append(Middleware(ApiKeyMiddleware, api_key=config.api_key,
                                     on_error=error_response))
    # Innermost, so its answers still get CORS headers.
    middleware.append(Middleware(ErrorAnswerMiddleware, on_error=error_response,
                                 draining=lambda: state.draining))
    app = ServingApp(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.serving = state
    return app


class ServingApp(Starlette):
    """Starlette with only the server's own middleware around its router.

    Starlette wraps the user's middleware in its ``ServerErrorMiddleware`` and
    ``ExceptionMiddleware``; here :class:`ErrorAnswerMiddleware` answers every exception itself
    (ours, ``InputError``, and the router's ``HTTPException`` for 404/405), so those two layers
    would only add their calls and wrapped ``send`` to every request.
    """

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = self.router
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app


class ErrorAnswerMiddleware:
    """Answers every exception with our JSON error (an unexpected one: 500) and keeps the
    connection usable.

    Starlette's own ``ServerErrorMiddleware`` (left out: :class:`ServingApp`) sends its answer
    and then re-raises; uvicorn, seeing an exception after a response started, drops the
    keep-alive connection without ``Connection: close``, so a client's next request on it fails.
    Here the exception ends with the answer. One raised after the answer started cannot be
    answered any more and goes on up (uvicorn closes the connection).

    A request cancelled while the server drains (the host's drain deadline passed) is answered
    503 with ``Retry-After``, so its client knows to retry elsewhere, and ends there.
    """

    def __init__(self, app: ASGIApp, on_error: Callable[[Exception, Any], Response],
                 draining: Callable[[], bool]) -> None:
        self.app = app
        self._on_error = on_error
        self._draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as error:
            if started:
                raise
            await self._on_error(error, scope)(scope, receive, send)
        except asyncio.CancelledError:
            if started or not self._draining():
                raise
            cut = UnavailableError("The server shut down before answering (drain deadline); "
                                   "retry on another replica.", {"Retry-After": "1"})
            await self._on_error(cut, scope)(scope, receive, send)


def error_json_response(error: ServeError) -> JSONResponse:
    """``{"error": message, "error_type": ...}`` with the error's status and headers.

    A message may quote what the client sent (a model name, say); a lone surrogate in it would
    make the answer itself fail to encode, so it is written as its escape.
    """
    return JSONResponse({"error": printable_message(error), "error_type": error.error_type},
                        status_code=error.status, headers=error.headers)


def printable_message(error: ServeError) -> str:
    """The error's message, a lone surrogate in it (from what the client sent) as its escape."""
    return str(error).encode("utf-8", "backslashreplace").decode("utf-8")


def counted_failure(state: ServerState, model: str, error: Exception) -> ServeError:
    """``error`` as a ServeError, counted in the failures metric under ``model``."""
    serve_error = as_serve_error(error)
    # Only served names become label values: clients must not grow the metric series.
    state.metrics.failures.labels(model if model in state.models else "",
                                  serve_error.error_type).inc()
    return serve_error


def as_serve_error(error: Exception) -> ServeError:
    """Every failure as a ServeError: ours as they are, bad input 422, anything else 500."""
    if isinstance(error, ServeError):
        return error
    if isinstance(error, InputError):
        return ValidationError(str(error))
    if isinstance(error, HTTPException):
        wrapped = ServeError(error.detail, dict(error.headers or {}))
        wrapped.status = error.status_code
        wrapped.error_type = "validation"
        return wrapped
    logger.error("Unexpected server error", exc_info=error)
    return ServeError(f"Internal error: {type(error).__name__}: {error}")


async def _load(state: ServerState, load: Callable[[], Mapping[str, Any]]) -> None:
    try:
        models = await asyncio.to_thread(load)
    except Exception as error:  # keep serving liveness; readiness explains
        state.load_error = str(error)
        logger.error("Loading the models failed: %s", error)
        return
    state.install(models)
