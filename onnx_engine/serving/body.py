"""Reading request bodies within the size limit, and parsing JSON ones."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from onnx_engine.serving.errors import ClientDisconnectedError, PayloadTooLargeError, ValidationError


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be over ``limit`` bytes.

    ``Content-Length`` is checked first, so an honest oversized request is refused before any
    of it is read; a chunked one is counted while it streams.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
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


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object.

    Raises:
        PayloadTooLargeError: over ``limit`` bytes.
        ValidationError: not JSON, or not an object.
    """
    raw = await read_body(request, limit)
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValidationError(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise ValidationError(f"The request body must be a JSON object, got {type(value).__name__}.")
    return value


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is {'at least ' if size else ''}{size} bytes; this server takes at most "
        f"{limit} (--max-body-bytes)."
    )
