"""Building an answer off the event loop when it is large.

JSON-encoding 64 embeddings of 384 floats (or their base64, or a V2 binary body) takes
milliseconds of CPU; done on the event loop it would hold every other request's answer, health
checks included, for that long. Small answers are built inline: a thread hop costs more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Values (floats, labels, texts) an answer may hold and still be built on the event loop: ~2k
# floats JSON-encode in well under a millisecond, about what handing the work to a thread costs.
INLINE_VALUES = 2048


async def built(values: int, build: Callable[[], T]) -> T:
    """``build()``, in a worker thread when the answer holds more than ``INLINE_VALUES`` values."""
    if values <= INLINE_VALUES:
        return build()
    return await asyncio.to_thread(build)
