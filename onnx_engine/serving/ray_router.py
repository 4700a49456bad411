"""The HTTP ingress of several models on Ray Serve: one port, every route, every model.

It reads the model name from the path and forwards the request to that model's replicas (one
Ray hop more than a lone model's ingress); server-wide routes go to every model (readiness) or
to one (the rest).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from onnx_engine.serving.app import as_serve_error, error_json_response
from onnx_engine.serving.auth import key_error
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import NotFoundError, OverloadedError, ServeError, UnavailableError
from onnx_engine.serving.ray_replica import ForwardedRequest, ForwardedResponse

ROUTER_NAME = "router"
# /v2/models/NAME/... (KServe V2) and /models/NAME[/generate] (Hugging Face).
_MODEL_PATH = re.compile(r"^/(?:v2/)?models/([^/]+)")
# Server-wide routes every model's app answers; readiness must hold for every model.
_READINESS_PATHS = frozenset({"/v2/health/ready", "/health"})


class Router:
    """The HTTP ingress: every route of ``onnx-engine serve`` on one port, for every model."""

    def __init__(self, config: ServeConfig, **models: Any) -> None:
        self._config = config
        self._models = models  # name -> DeploymentHandle of the model's deployment

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        try:
            forwarded = await _forwarded(request)
            match = _MODEL_PATH.match(path)
            if match:
                name = match.group(1)
                self._check_key(request)
                if name not in self._models:
                    raise NotFoundError(
                        f"No model named '{name}'; this server has "
                        f"{', '.join(sorted(self._models))}."
                    )
                return await self._forward(name, forwarded)
            if path in _READINESS_PATHS:  # ready when every model is
                answers = await asyncio.gather(
                    *(self._forward(name, forwarded) for name in self._models))
                return next((a for a in answers if a.status_code != 200), answers[0])
            return await self._forward(min(self._models), forwarded)
        except ServeError as error:
            return error_json_response(as_serve_error(error))

    def _check_key(self, request: Request) -> None:
        """The models' apps check the key too; the router checks it before answering 404."""
        key = self._config.api_key
        error = None if key is None else key_error(request.scope, key)
        if error is not None:
            raise error

    async def _forward(self, name: str, forwarded: ForwardedRequest) -> Response:
        from ray import exceptions as ray_errors
        from ray.serve.exceptions import BackPressureError

        try:
            answer: ForwardedResponse = await self._models[name].forward.remote(forwarded)
        except BackPressureError:
            raise OverloadedError(
                f"Every replica of '{name}' is at its limit and the queue is full; retry shortly.",
                {"Retry-After": "1"},
            ) from None
        except (ray_errors.RayActorError, ray_errors.ActorUnavailableError) as error:
            raise UnavailableError(
                f"The replica of '{name}' running this request stopped ({type(error).__name__}); "
                "retry: Serve routes it to a live replica.", {"Retry-After": "1"},
            ) from None
        response = Response(answer.body, status_code=answer.status)
        response.raw_headers = answer.headers
        return response


async def _forwarded(request: Request) -> ForwardedRequest:
    client = request.client
    return ForwardedRequest(
        request.method, request.url.path, request.scope.get("query_string", b""),
        list(request.scope["headers"]), await request.body(),
        (client.host, client.port) if client else None,
    )
