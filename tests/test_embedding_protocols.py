"""TEI and OpenAI embedding request parsing and response shapes (no server needed)."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from engine.errors import InputError
from onnx_engine.embedding_protocols import (
    decode_base64,
    encode_base64,
    openai_response,
    parse_openai,
    parse_tei,
    tei_response,
)

VECTORS = np.array([[0.25, -1.5, 3.0e-8], [1.0, 0.0, -0.125]], dtype=np.float32)


def test_tei_defaults_follow_text_embeddings_inference():
    request = parse_tei({"inputs": "one text"})
    assert request.texts == ["one text"] and request.normalize is True and request.truncate is False
    request = parse_tei({"inputs": ["a", ""], "normalize": False, "truncate": True})
    assert request.texts == ["a", ""] and request.normalize is False and request.truncate is True
    assert tei_response(VECTORS) == VECTORS.tolist()


def test_openai_request_and_float_response():
    request = parse_openai({"model": "minilm", "input": ["a", "b"]})
    assert request.texts == ["a", "b"] and request.model == "minilm"
    # OpenAI's API (and TEI's /v1/embeddings) refuse over-long input: there is no flag to cut.
    assert request.encoding_format == "float" and request.normalize is None
    assert not request.truncate
    answer = openai_response(VECTORS, [3, 4], "minilm")
    assert answer["object"] == "list" and answer["model"] == "minilm"
    assert answer["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert all(item["object"] == "embedding" for item in answer["data"])
    assert answer["data"][1]["embedding"] == VECTORS[1].tolist()


def test_base64_is_little_endian_float32_as_the_openai_client_decodes_it():
    answer = openai_response(VECTORS, [1, 1], "m", encoding_format="base64")
    text = answer["data"][0]["embedding"]
    raw = base64.b64decode(text)
    assert len(raw) == 4 * VECTORS.shape[1]
    assert raw[:4] == struct.pack("<f", 0.25) == b"\x00\x00\x80\x3e"
    # The openai client: np.frombuffer(base64.b64decode(data), dtype="float32").
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), VECTORS[0])
    np.testing.assert_array_equal(decode_base64(encode_base64(VECTORS[1])), VECTORS[1])


@pytest.mark.parametrize("body, message", [
    ({}, "inputs"),
    ({"inputs": []}, "non-empty"),
    ({"inputs": ["a", 3]}, r"\[1\] is int"),
    ({"inputs": "a", "normalize": "yes"}, "normalize"),
    ({"inputs": "a", "truncation_direction": "Left"}, "Left"),
    ({"inputs": "a", "prompt_name": "query"}, "prompt_name"),
    ({"inputs": "a", "dimensions": 128}, "dimensions"),
    ({"inputs": "a", "colour": 1}, "Unknown key"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_tei_bodies(body, message):
    with pytest.raises(InputError, match=message):
        parse_tei(body)


@pytest.mark.parametrize("body, message", [
    ({"input": "a"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": [1, 2, 3]}, "Token-id"),
    ({"model": "m", "input": [[1, 2], [3]]}, "Token-id"),
    ({"model": "m", "input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "m", "input": "a", "dimensions": 64}, "dimensions"),
    ({"model": "m", "input": None}, "non-empty"),
])
def test_bad_openai_bodies(body, message):
    with pytest.raises(InputError, match=message):
        parse_openai(body)
