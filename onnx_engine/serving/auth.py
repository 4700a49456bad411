"""API-key check: ``Authorization: Bearer <key>`` on every route but health, compared in
constant time. The key never appears in a response or a log line."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from onnx_engine.serving.errors import UnauthorizedError

# Load balancers and orchestrators probe these without credentials.
PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/health"})


class ApiKeyMiddleware:
    """Answers 401 before the app runs unless the request carries the key."""

    def __init__(self, app: ASGIApp, api_key: str, on_error) -> None:
        self.app = app
        self._key = api_key.encode()
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = key_error(scope, self._key)
        if error is None:
            await self.app(scope, receive, send)
        else:
            await self._on_error(error, scope)(scope, receive, send)


def key_error(scope: Scope, key: bytes | str) -> UnauthorizedError | None:
    """The 401 for a request that needs the key and lacks it; ``None`` when it may pass
    (not HTTP, a public path, a CORS preflight, or the right key)."""
    if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
        return None
    if authorized(scope["headers"], key):
        return None
    return UnauthorizedError(
        "Missing or wrong API key: send the header 'Authorization: Bearer <key>'.",
        {"WWW-Authenticate": "Bearer"},
    )


def authorized(headers: list[tuple[bytes, bytes]], key: bytes | str) -> bool:
    """Whether ASGI ``headers`` carry ``Authorization: Bearer <key>`` (constant-time compare)."""
    expected = key.encode() if isinstance(key, str) else key
    given = b""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer":
                given = token.strip()
    # compare_digest's time depends only on the length of `given`, never on the key's bytes.
    return hmac.compare_digest(given, expected)
