"""Request and response shapes of the embedding APIs clients already speak.

- text-embeddings-inference (TEI) ``POST /embed``: ``{"inputs": str | [str], "normalize": true,
  "truncate": false}`` -> ``[[float, ...], ...]`` (a list of vectors even for one string).
- OpenAI ``POST /v1/embeddings``: ``{"model", "input": str | [str], "encoding_format":
  "float" | "base64"}`` -> ``{"object": "list", "data": [{"object": "embedding", "index",
  "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``. The ``openai`` Python
  client asks for base64 unless told otherwise and decodes it as little-endian float32, so that
  is what base64 means here.

Only parsing and shaping live here (no web framework, no model): the server's embedding handler
calls these around one batched engine call. Bad requests raise ``InputError``, which the server
answers with 422 and one message.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.tokenization import as_text_list
from onnx_engine.json_fields import check_keys, flag

ENCODING_FORMATS = ("float", "base64")
_TEI_KEYS = ("inputs", "normalize", "truncate", "truncation_direction", "prompt_name",
             "dimensions")
_OPENAI_KEYS = ("input", "model", "encoding_format", "dimensions", "user")


@dataclass(frozen=True)
class EmbeddingRequest:
    """One parsed embedding request.

    Attributes:
        texts: the strings to embed, in order.
        normalize: L2-normalize (``None``: as the model does).
        truncate: cut texts over the model's input bound there; when False (TEI's default,
            and OpenAI's only behaviour) an over-long text is an error (413).
        model: the model name the client asked for (OpenAI), if any.
        encoding_format: ``float`` or ``base64`` (OpenAI).
    """

    texts: list[str]
    normalize: bool | None = None
    truncate: bool = False
    model: str | None = None
    encoding_format: str = "float"


def parse_tei(body: Mapping[str, Any]) -> EmbeddingRequest:
    """A TEI ``/embed`` body.

    Raises:
        InputError: unknown keys, missing or malformed ``inputs``, non-boolean flags, or an option
            the engine does not implement (left truncation, prompts, other dimensions).
    """
    check_keys(body, _TEI_KEYS, '{"inputs": "text" or ["text", ...]}')
    texts = _texts(body.get("inputs"), "inputs")
    if body.get("truncation_direction", "Right") not in ("Right", "right"):
        raise InputError(
            'truncation_direction "Left" is not supported; texts are cut on the right.'
        )
    if body.get("prompt_name") is not None:
        raise InputError("prompt_name is not supported: this server applies no prompts.")
    _no_dimensions(body.get("dimensions"))
    return EmbeddingRequest(
        texts,
        normalize=flag(body, "normalize", True),
        truncate=flag(body, "truncate", False),
    )


def parse_openai(body: Mapping[str, Any]) -> EmbeddingRequest:
    """An OpenAI ``/v1/embeddings`` body.

    Raises:
        InputError: unknown keys, missing ``model`` or ``input``, token-id input, an unknown
            ``encoding_format`` or a ``dimensions`` other than the model's.
    """
    check_keys(body, _OPENAI_KEYS, '{"model": "NAME", "input": "text" or ["text", ...]}')
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InputError('The body needs "model": the name of a served model.')
    raw = body.get("input")
    if (isinstance(raw, list) and raw and all(isinstance(item, int) for item in raw)) or (
        isinstance(raw, list) and raw and all(isinstance(item, list) for item in raw)
    ):
        raise InputError('Token-id input is not supported; send "input" as text.')
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODING_FORMATS:
        raise InputError(
            f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}, got {encoding!r}."
        )
    _no_dimensions(body.get("dimensions"))
    return EmbeddingRequest(_texts(raw, "input"), model=model, encoding_format=encoding)


def tei_response(vectors: np.ndarray) -> list[list[float]]:
    """TEI's answer: one list of floats per text."""
    return np.asarray(vectors, dtype=np.float32).tolist()


def openai_response(
    vectors: np.ndarray, token_counts: Sequence[int], model: str, encoding_format: str = "float"
) -> dict[str, Any]:
    """OpenAI's answer; usage counts the tokens the model saw (after truncation)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    encode = encode_base64 if encoding_format == "base64" else (lambda row: row.tolist())
    tokens = int(sum(int(count) for count in token_counts))
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(row)}
            for index, row in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def encode_base64(vector: np.ndarray) -> str:
    """A vector as base64 of its little-endian float32 bytes (what the openai client decodes)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_base64(text: str) -> np.ndarray:
    """The inverse of :func:`encode_base64`."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def _texts(value: Any, key: str) -> list[str]:
    """The strings of ``key``, checked as every route checks texts (valid Unicode included)."""
    if isinstance(value, str):
        return as_text_list(value, what=key)[0]
    if not isinstance(value, list) or not value:
        raise InputError(f'"{key}" must be a string or a non-empty list of strings.')
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InputError(f'"{key}"[{index}] is {type(item).__name__}, not a string.')
    return as_text_list(value, what=key)[0]


def _no_dimensions(value: Any) -> None:
    if value is not None:
        raise InputError(
            '"dimensions" is not supported: the model returns its full embedding width.'
        )
