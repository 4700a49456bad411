"""A model's replica on Ray Serve: the native server's app over one model, loaded once.

Alone it is the application's ingress; behind the router (several models) it answers the
requests the router forwards (:class:`ForwardedRequest`), app and lifespan included.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.options import RuntimeOptions
from onnx_engine.serving.app import build_app
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.model_specs import load_served_model


@dataclass(frozen=True)
class ForwardedRequest:
    """An HTTP request as the router hands it to a model replica (body already read)."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None


@dataclass(frozen=True)
class ForwardedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ModelServer:
    """One replica of one model: the native server's app over that model, loaded once.

    As the ingress of a one-model application (``serve.ingress()`` over this class, the app
    bound late by ``__serve_build_asgi_app__`` since the model loads in the replica), Serve's
    proxy hands HTTP requests straight to the app on this replica's event loop, and Serve runs
    the app's lifespan (which starts the batcher) before it routes to the replica and when it
    stops it (what is queued still runs). Behind the router of several models (Serve allows one
    ingress per application) :class:`RoutedModelServer` runs the same app through
    :meth:`forward`.
    """

    async def __init__(self, name: str, path: str, config: ServeConfig,
                       options: RuntimeOptions) -> None:
        model = await asyncio.to_thread(load_served_model, Path(path), options)
        self._app = build_app(config, {name: model})

    def __serve_build_asgi_app__(self) -> Any:
        return self._app

    async def forward(self, request: ForwardedRequest) -> ForwardedResponse:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": "http", "path": request.path,
            "raw_path": request.path.encode(), "root_path": "",
            "query_string": request.query_string, "headers": request.headers,
            "client": request.client, "server": None,
        }
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if body_sent:  # the body is all here; a disconnect arrives as this task's cancellation
                await asyncio.Event().wait()
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        return ForwardedResponse(start["status"], list(start.get("headers", [])), b"".join(chunks))


class RoutedModelServer(ModelServer):
    """A model replica behind the router: runs its app's lifespan itself (Serve does not)."""

    async def __init__(self, name: str, path: str, config: ServeConfig,
                       options: RuntimeOptions) -> None:
        await super().__init__(name, path, config, options)
        self._lifespan = self._app.router.lifespan_context(self._app)
        await self._lifespan.__aenter__()

    async def __del__(self) -> None:
        """Serve stops the replica: finish what is queued (the native server's drain)."""
        await self._lifespan.__aexit__(None, None, None)
