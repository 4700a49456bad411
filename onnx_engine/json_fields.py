"""Checks of the JSON bodies that the client protocols share (TEI, OpenAI, infinity/Cohere).

Each protocol module (``onnx_engine.embedding_protocols``, ``onnx_engine.serving.rerank_routes``)
parses its own keys with these, so an unknown key or a non-boolean flag is refused in the same
words on every route. No web framework here: bad bodies raise ``InputError`` (422 on a server).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import InputError


def check_keys(body: Mapping[str, Any], known: Sequence[str], example: str) -> None:
    """Refuse a body that is not an object, or that has keys outside ``known``.

    Raises:
        InputError: naming the unknown keys and an ``example`` body.
    """
    if not isinstance(body, Mapping):
        raise InputError(f"The body must be a JSON object like {example}.")
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise InputError(f"Unknown key(s) {unknown}; send {example}.")


def flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    """``body[key]`` if it is true or false; ``default`` when absent or null.

    Raises:
        InputError: any other value (a string "true" is a client's slip, not a flag).
    """
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f'"{key}" must be true or false, got {value!r}.')
    return value
