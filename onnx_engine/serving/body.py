"""Reading request bodies within the size limit and the client timeout, and parsing JSON ones.

Routes read the whole body before a request is admitted (``inference.admitted``): a client that
sends its body slowly, or never, holds a connection for at most ``client_timeout_s`` and never
one of the ``max_concurrent_requests`` slots.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import (
    ClientDisconnectedError,
    PayloadTooLargeError,
    ServeError,
    ValidationError,
)

# Bodies up to this size are parsed on the event loop. JSON numbers parse at ~40 us per KB here
# (8 MB of floats: ~300 ms; of text: ~13 ms): a larger body parsed inline would hold every other
# request's answer, health checks included, for that long; a thread hop costs ~0.1 ms.
_INLINE_PARSE_BYTES = 16 * 1024


class ClientTimeoutError(ServeError):
    """The client did not send its whole body within ``client_timeout_s`` (408).

    The answer closes the connection: what the client sends after it cannot be told apart from
    the rest of the body it never finished.
    """

    status = 408
    error_type = "timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Connection": "close"})


async def read_body(request: Request, config: ServeConfig) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be over ``max_body_bytes``.

    ``Content-Length`` is checked first, so an honest oversized request is refused before any
    of it is read; a chunked one is counted while it streams.

    Raises:
        PayloadTooLargeError: over ``max_body_bytes``.
        ClientTimeoutError: the body did not arrive within ``client_timeout_s``.
        ClientDisconnectedError: the client went away while sending it.
    """
    limit = config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    try:
        # A deadline on this task, not wait_for's task per request (a hop of the event loop).
        async with asyncio.timeout(config.client_timeout_s):
            return await _stream(request, limit)
    except TimeoutError:
        raise ClientTimeoutError(
            f"The request body did not arrive within {config.client_timeout_s} s "
            "(--client-timeout-s); send it whole, or at a faster rate."
        ) from None


async def _stream(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnectedError("The client disconnected while sending its body.") from None
    return b"".join(chunks)


async def read_json_object(request: Request, config: ServeConfig) -> dict[str, Any]:
    """The body as a JSON object.

    Raises:
        PayloadTooLargeError, ClientTimeoutError, ClientDisconnectedError: see :func:`read_body`.
        ValidationError: not JSON, or not an object.
    """
    raw = await read_body(request, config)
    try:
        if len(raw) <= _INLINE_PARSE_BYTES:
            value = json.loads(raw)
        else:
            value = await asyncio.to_thread(json.loads, raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValidationError(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise ValidationError(
            f"The request body must be a JSON object, got {type(value).__name__}."
        )
    return value


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is {'at least ' if size else ''}{size} bytes; this server takes at most "
        f"{limit} (--max-body-bytes)."
    )
