"""Rerank routes of `onnx-engine serve` over real HTTP on 127.0.0.1: text-embeddings-inference's
``POST /rerank`` and infinity's Cohere-style ``POST /v1/rerank``, posted with ``httpx`` exactly
as those servers document their JSON (``huggingface_hub.InferenceClient`` has no rerank method,
and no Cohere or infinity client is installed). Expected rankings come from sentence-transformers'
``CrossEncoder.rank`` on the same tiny checkpoint (scores within 1e-5)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import tiny_rerankers
import torch
import tritonclient.http as triton
from serve_support import running_server
from tiny_rerankers import cross_encoder

import engine
from onnx_engine.serving.batcher import Batcher, WorkItem
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.metrics import ServerMetrics
from onnx_engine.serving.rerank_routes import parse_cohere_rerank, parse_tei_rerank, tei_answer
from onnx_engine.serving.tasks.reranking import RerankingHandler

reranker_factory = tiny_rerankers.reranker_factory  # the session fixture, shared
ATOL = 1e-5
QUERY = "How do I bake bread at home?"
TEXTS = [
    "Knead the dough until smooth and let it rise for an hour.",
    "The striker scored twice in the second half.",
    "",
    "Café naïve résumé: 東京タワーは高い。 🚀",
    "Preheat the oven and bake the loaf for forty minutes.",
]
LONG = "bread " * 60  # over the model's 32 tokens with the query


@pytest.fixture(scope="module")
def served(reranker_factory):
    exported = reranker_factory("ce-bert")
    model = engine.load(exported.artifact)
    with running_server(ServeConfig(), {"ce": model}) as (url, _):
        yield url, model, cross_encoder(exported.checkpoint)


def _expected(reference, texts, **options):
    return reference.rank(QUERY, texts, show_progress_bar=False, **options)


def _assert_ranked(answer, expected, index: str, score: str, text: str | None) -> None:
    assert [entry[index] for entry in answer] == [entry["corpus_id"] for entry in expected]
    np.testing.assert_allclose([entry[score] for entry in answer],
                               [float(entry["score"]) for entry in expected], atol=ATOL, rtol=0)
    keys = {index, score} | ({text} if text else set())
    assert all(set(entry) == keys for entry in answer)
    if text:
        assert [entry[text] for entry in answer] == [entry["text"] for entry in expected]


def test_tei_rerank_answers_cross_encoders_ranking(served):
    url, _, reference = served
    answer = httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": TEXTS}, timeout=30)
    assert answer.status_code == 200
    _assert_ranked(answer.json(), _expected(reference, TEXTS), "index", "score", None)
    with_text = httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": TEXTS,
                                                   "return_text": True}, timeout=30)
    expected = _expected(reference, TEXTS, return_documents=True)
    _assert_ranked(with_text.json(), expected, "index", "score", "text")
    raw = httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": TEXTS, "raw_scores": True},
                     timeout=30)
    logits = _expected(reference, TEXTS, activation_fn=torch.nn.Identity())
    _assert_ranked(raw.json(), logits, "index", "score", None)


def test_tei_rerank_refuses_a_pair_over_the_bound_unless_truncate(served):
    url, _, reference = served
    refused = httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": ["a", LONG]}, timeout=30)
    assert refused.status_code == 413
    assert refused.json()["error_type"] == "validation"
    message = refused.json()["error"]
    assert "Text #1 has" in message and '"truncate": true' in message
    cut = httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": ["a", LONG],
                                            "truncate": True}, timeout=30)
    assert cut.status_code == 200
    _assert_ranked(cut.json(), _expected(reference, ["a", LONG]), "index", "score", None)


def test_v1_rerank_answers_infinitys_shape(served):
    url, model, reference = served
    body = {"model": "ce", "query": QUERY, "documents": [*TEXTS, LONG], "top_n": 3,
            "return_documents": True}
    answer = httpx.post(f"{url}/v1/rerank", json=body, timeout=30)
    assert answer.status_code == 200
    data = answer.json()
    assert data["object"] == "rerank" and data["model"] == "ce"
    assert isinstance(data["id"], str) and isinstance(data["created"], int)
    expected = _expected(reference, [*TEXTS, LONG], top_k=3, return_documents=True)
    _assert_ranked(data["results"], expected, "index", "relevance_score", "document")
    pairs = [(QUERY, text) for text in [*TEXTS, LONG]]
    tokens = int(model.tokenizer.encode(pairs).attention_mask.sum())  # as read: LONG is cut
    assert data["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    unnamed = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": TEXTS}, timeout=30)
    _assert_ranked(unnamed.json()["results"], _expected(reference, TEXTS), "index",
                   "relevance_score", None)


def test_v2_scores_every_pair_in_document_order_through_tritonclient(served):
    url, _, reference = served
    client = triton.InferenceServerClient(url.split("//", 1)[1])
    query = triton.InferInput("query", [1], "BYTES")
    query.set_data_from_numpy(np.array([QUERY], dtype=object))
    texts = triton.InferInput("text", [len(TEXTS)], "BYTES")
    texts.set_data_from_numpy(np.array(TEXTS, dtype=object))
    result = client.infer("ce", [query, texts])
    pairs = [(QUERY, text) for text in TEXTS]
    expected = reference.predict(pairs, show_progress_bar=False)
    np.testing.assert_allclose(result.as_numpy("score"), expected, atol=ATOL, rtol=0)
    logits = reference.predict(pairs, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    np.testing.assert_allclose(result.as_numpy("logits"), logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("route, body, status, message", [
    ("/rerank", {"query": QUERY, "texts": []}, 422, '"texts" must be a non-empty list'),
    ("/rerank", {"query": QUERY, "texts": "one"}, 422, '"texts" must be a non-empty list'),
    ("/rerank", {"query": QUERY, "texts": ["a", 2]}, 422, '"texts"[1] is int'),
    ("/rerank", {"texts": ["a"]}, 422, '"query" must be a non-empty string'),
    ("/rerank", {"query": 7, "texts": ["a"]}, 422, '"query" must be a non-empty string'),
    ("/rerank", {"query": QUERY, "texts": ["a"], "raw_scores": "yes"}, 422, "true or false"),
    ("/rerank", {"query": QUERY, "texts": ["a"], "top_n": 1}, 422, "Unknown key(s) ['top_n']"),
    ("/rerank", {"query": QUERY, "texts": ["a"], "truncation_direction": "Left"}, 422, "Left"),
    ("/v1/rerank", {"query": QUERY, "documents": []}, 422, '"documents" must be a non-empty'),
    ("/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": 0}, 422, '"top_n" must be'),
    ("/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": "2"}, 422, '"top_n" must be'),
    ("/v1/rerank", {"model": "nope", "query": QUERY, "documents": ["a"]}, 404, "No model named"),
    ("/v1/rerank", {"model": 3, "query": QUERY, "documents": ["a"]}, 422, '"model" must be'),
    ("/models/ce", {"inputs": "a"}, 404, "POST /rerank"),
    ("/v2/models/ce/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                         "data": ["a"]}]}, 422, "no input 'query'"),
])
def test_bad_requests_get_the_servers_errors(served, route, body, status, message):
    url, _, _ = served
    answer = httpx.post(f"{url}{route}", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_too_many_documents_and_auth_use_the_servers_limits(reranker_factory):
    model = engine.load(reranker_factory("ce-bert").artifact)
    config = ServeConfig(api_key="secret", max_client_batch_size=2)
    with running_server(config, {"ce": model}) as (url, _):
        body = {"query": QUERY, "texts": ["a", "b"]}
        assert httpx.post(f"{url}/rerank", json=body, timeout=30).status_code == 401
        headers = {"Authorization": "Bearer secret"}
        allowed = httpx.post(f"{url}/rerank", json=body, headers=headers, timeout=30)
        assert allowed.status_code == 200
        many = httpx.post(f"{url}/v1/rerank", headers=headers, timeout=30,
                          json={"query": QUERY, "documents": ["a", "b", "c"]})
        assert many.status_code == 422 and "--max-client-batch-size" in many.json()["error"]


def test_rerank_names_the_model_when_several_are_served(reranker_factory):
    models = {name: engine.load(reranker_factory(key).artifact)
              for name, key in (("a", "ce-bert"), ("b", "plain-roberta"))}
    with running_server(ServeConfig(), models) as (url, _):
        tei = httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": ["x"]}, timeout=30)
        assert tei.status_code == 422
        assert "several text-ranking models (a, b)" in tei.json()["error"]
        named = httpx.post(f"{url}/v1/rerank", json={"model": "b", "query": QUERY,
                                                      "documents": TEXTS}, timeout=30)
        expected = models["b"].rank(QUERY, TEXTS)
        _assert_ranked(named.json()["results"], expected, "index", "relevance_score", None)


def test_pairs_of_a_tei_and_a_cohere_request_share_one_batch(reranker_factory):
    """The server's batcher with the rerank handler: both requests' pairs are queued before the
    first batch forms (``submit`` is synchronous), and run as the rows of one engine call."""
    model = engine.load(reranker_factory("ce-bert").artifact)
    handler = RerankingHandler(model, ServeConfig())
    calls: list[int] = []

    def run_batch(key, pairs):
        calls.append(len(pairs))
        return handler.run_batch(key, pairs)

    tei = handler.job(parse_tei_rerank({"query": QUERY, "texts": TEXTS[:3]}))
    cohere = handler.job(parse_cohere_rerank({"query": QUERY, "documents": TEXTS})[0])

    async def serve():
        batcher = Batcher("ce", run_batch, 32, 16384, 0.0, ServerMetrics())
        batcher.start()
        loop = asyncio.get_running_loop()
        items = [[WorkItem(row, row.tokens, job.key, job, loop.create_future())
                  for row in handler.bounded(job)] for job in (tei, cohere)]
        batcher.submit([item for job_items in items for item in job_items])
        results = [[(await item.future).value for item in job_items] for job_items in items]
        await batcher.close()
        return results

    results = asyncio.run(asyncio.wait_for(serve(), timeout=60))
    assert calls == [3 + len(TEXTS)]
    _assert_ranked(tei_answer(handler.ranking(tei, results[0])), model.rank(QUERY, TEXTS[:3]),
                   "index", "score", None)
    _assert_ranked(handler.ranking(cohere, results[1]), model.rank(QUERY, TEXTS),
                   "corpus_id", "score", None)


@pytest.mark.parametrize("protocol", ["rerank", "v1-rerank", "v2"])
def test_loadtest_checks_every_ranking_answer(served, reranker_factory, protocol, tmp_path,
                                              capsys):
    """A bounded load test against the real server passes every answer (each text's logit
    against the fixed query, as the in-process Reranker scores it) on each rerank protocol."""
    from onnx_engine.cli import main

    url, _, _ = served
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join([TEXTS[0], TEXTS[1], TEXTS[3]]) + "\n", encoding="utf-8")
    out = tmp_path / "result.json"
    code = main(["loadtest", url, "--model", "ce",
                 "--artifact", str(reranker_factory("ce-bert").artifact), "--protocol", protocol,
                 "--concurrency", "1,4", "--duration", "0.5", "--max-requests", "24",
                 "--texts", str(texts), "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    levels = json.loads(out.read_text())["servers"]["server"]["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    assert all(0 < level["statuses"].get("200", 0) <= 24 and level["mixed_up"] == level["lost"] == 0
               for level in levels)


def test_loadtest_catches_a_score_of_another_text(served):
    """Each text's expected logit swapped for another text's: every answer is a mix-up."""
    from onnx_engine.loadtest.protocols import Protocol
    from onnx_engine.loadtest.reference import Reference, build_reference
    from onnx_engine.loadtest.runner import run_level

    url, model, _ = served
    texts = [TEXTS[0], TEXTS[1], TEXTS[4]]
    right = build_reference(model, texts, {})
    assert right.expected == {text: float(model.predict(("Which text answers the question best?",
                                                          text), activation="none"))
                              for text in texts}
    shifted = Reference({text: right.expected[texts[(index + 1) % 3]]
                         for index, text in enumerate(texts)}, "text-ranking")
    protocol = Protocol("v1-rerank", "text-ranking", "ce", {})
    level = asyncio.run(run_level(url, protocol, texts, shifted, 2, 5.0, 6, {})).result()
    assert level.requests == 6 and level.mixed_up == 6 and level.statuses == {"200": 6}
    level = asyncio.run(run_level(url, protocol, texts, right, 2, 5.0, 6, {})).result()
    assert level.requests == 6 and level.mixed_up == 0
