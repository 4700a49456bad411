"""Embedding routes of `onnx-engine serve` with unmodified clients: the openai package on
``/v1/embeddings`` (base64 and float), text-embeddings-inference's ``/embed`` over HTTP, and the
V2 ``embedding`` output through tritonclient. Expected vectors come from the same Embedder called
in-process (within 1e-5 relative: batch composition changes padding and summation order)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from openai import OpenAI
from serve_support import running_server

import engine
from engine.tasks.feature_extraction import Embedder
from onnx_engine.serving.config import ServeConfig

TEXTS = ["A man is eating food.", "", "naïve café 東京", "stock markets fell " * 3]


@pytest.fixture(scope="module")
def served(minilm_embedder, distilbert):
    """MiniLM (real weights) and a classifier, so routes must pick the embedding model."""
    models = {"minilm": Embedder.load(minilm_embedder.artifact),
              "clf": engine.load(distilbert.artifact)}
    with running_server(ServeConfig(), models) as (url, _):
        yield url, models["minilm"]


def _close(ours, theirs) -> None:
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float32), theirs, rtol=1e-5, atol=1e-6)


def test_openai_client_gets_the_engine_vectors_and_usage(served):
    url, model = served
    client = OpenAI(base_url=f"{url}/v1", api_key="not-checked", max_retries=0)
    expected, counts = model.embed_with_token_counts(TEXTS)
    answer = client.embeddings.create(model="minilm", input=TEXTS)  # base64 on the wire
    assert [item.index for item in answer.data] == list(range(len(TEXTS)))
    _close([item.embedding for item in answer.data], expected)
    assert answer.model == "minilm" and answer.usage.prompt_tokens == int(counts.sum())
    assert answer.usage.total_tokens == int(counts.sum())
    single = client.embeddings.create(model="minilm", input="one", encoding_format="float")
    _close([single.data[0].embedding], model.embed("one"))


def test_tei_embed_normalizes_and_refuses_to_cut_unless_asked(served):
    url, model = served
    answer = httpx.post(f"{url}/embed", json={"inputs": TEXTS}, timeout=30)
    assert answer.status_code == 200
    _close(answer.json(), model.embed(TEXTS))
    raw = httpx.post(f"{url}/embed", json={"inputs": "one", "normalize": False}, timeout=30)
    _close(raw.json(), model.embed(["one"], normalize=False))
    long_text = "word " * 400
    refused = httpx.post(f"{url}/embed", json={"inputs": [long_text]}, timeout=30)
    assert refused.status_code == 413 and "truncate" in refused.json()["error"]
    cut = httpx.post(f"{url}/embed", json={"inputs": [long_text], "truncate": True}, timeout=30)
    _close(cut.json(), model.embed([long_text]))


def test_v2_embedding_output_through_tritonclient(served):
    url, model = served
    client = triton.InferenceServerClient(url.split("//", 1)[1])
    tensor = triton.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array(TEXTS, dtype=object))
    result = client.infer("minilm", [tensor], outputs=[triton.InferRequestedOutput("embedding")])
    embedding = result.as_numpy("embedding")
    assert embedding.dtype == np.float32 and embedding.shape == (len(TEXTS), 384)
    _close(embedding, model.embed(TEXTS))


@pytest.mark.parametrize("route, body, status, message", [
    ("/v1/embeddings", {"model": "nope", "input": "a"}, 404, "No model named"),
    ("/v1/embeddings", {"model": "clf", "input": "a"}, 404, "text-classification"),
    ("/v1/embeddings", {"model": "minilm", "input": [1, 2]}, 422, "Token-id"),
    ("/v1/embeddings", {"model": "minilm", "input": []}, 422, "non-empty"),
    ("/v1/embeddings", {"model": "minilm", "input": "a", "encoding_format": "int8"}, 422,
     "encoding_format"),
    ("/embed", {"inputs": ["a", 3]}, 422, "not a string"),
    ("/embed", {"inputs": "a", "normalize": "yes"}, 422, "normalize"),
])
def test_bad_requests_get_one_clear_error(served, route, body, status, message):
    url, _ = served
    answer = httpx.post(f"{url}{route}", json=body, timeout=30)
    assert answer.status_code == status and message in answer.json()["error"]


def test_hugging_face_feature_extraction_with_inference_client(served):
    from huggingface_hub import InferenceClient

    url, model = served
    vector = InferenceClient(model=f"{url}/models/minilm").feature_extraction("one text")
    assert vector.shape == (384,)  # one string in, one vector out
    _close(vector[None, :], model.embed("one text"))
    many = httpx.post(f"{url}/models/minilm", json={"inputs": TEXTS[:2]}, timeout=30).json()
    _close(many, model.embed(TEXTS[:2]))
    raw = httpx.post(f"{url}/models/minilm",
                     json={"inputs": ["one"], "parameters": {"normalize": False}}, timeout=30)
    _close(raw.json(), model.embed(["one"], normalize=False))


@pytest.mark.parametrize("protocol", ["openai", "hf", "v2"])
def test_loadtest_checks_every_embedding(served, minilm_embedder, protocol, tmp_path, capsys):
    """A bounded load test against the real server passes its answers, by cosine to the
    in-process Embedder, on each protocol that serves embeddings."""
    from onnx_engine.cli import main

    url, _ = served
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "result.json"
    code = main(["loadtest", url, "--model", "minilm", "--artifact", str(minilm_embedder.artifact),
                 "--protocol", protocol, "--concurrency", "1,4", "--duration", "0.5",
                 "--max-requests", "24", "--texts", str(texts), "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["cpu_isa_flags"] is None or isinstance(result["cpu_isa_flags"], list)
    levels = result["servers"]["server"]["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    assert all(0 < level["statuses"].get("200", 0) <= 24 and level["mixed_up"] == level["lost"] == 0
               and level["mean_batch_size"] >= 1 for level in levels)


def test_loadtest_catches_a_vector_of_another_text(served):
    """Each text's expected vector swapped for another text's: every answer is a mix-up."""
    from onnx_engine.loadtest.protocols import Protocol
    from onnx_engine.loadtest.reference import Reference
    from onnx_engine.loadtest.runner import run_level

    url, model = served
    texts = ["A man is eating food.", "The stock market fell sharply today.", "Where is the cat?"]
    vectors = model.embed(texts)
    shifted = Reference({text: vectors[(index + 1) % 3] for index, text in enumerate(texts)},
                        "feature-extraction")
    protocol = Protocol("openai", "feature-extraction", "minilm", {})
    level = asyncio.run(run_level(url, protocol, texts, shifted, 2, 5.0, 6, {})).result()
    assert level.requests == 6 and level.mixed_up == 6 and level.statuses == {"200": 6}
    right = Reference(dict(zip(texts, vectors)), "feature-extraction")
    level = asyncio.run(run_level(url, protocol, texts, right, 2, 5.0, 6, {})).result()
    assert level.requests == 6 and level.mixed_up == 0


def test_loadtest_openai_protocol_needs_an_embedding_model():
    from engine.errors import InputError
    from onnx_engine.loadtest.protocols import Protocol

    with pytest.raises(InputError, match="embeddings API"):
        Protocol("openai", "text-classification", "clf", {})
