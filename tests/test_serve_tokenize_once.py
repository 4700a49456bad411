"""Issue 21 #3: the server tokenizes each text once and the engine runs on that encoding.

The queue carries each text's encoded row (``TextTokenizer.bounded``); the engine's encoded calls
(``logits_encoded``, ``embed_encoded``, ...) run under its text calls too, so a served answer is
the in-process text call's, exactly (one request at a time: a batch of one either way). A spy on
the served tokenizer counts the texts it is given: once per text, for every task and route.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tiny_rerankers
from serve_support import running_server

import engine
from engine.seq2seq.generation_args import GenerationArgs
from onnx_engine.serving.config import ServeConfig

reranker_factory = tiny_rerankers.reranker_factory  # the session fixture, shared
TEXTS = ["The delivery was late, but support refunded the shipping.",
         "Café naïve résumé: 東京タワーは高い。 🚀", ""]
PAIR = {"text": "A man is playing a guitar.", "text_pair": "Someone makes music."}
QUERY = "How do I bake bread at home?"
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def served(distilbert, t5_v1_1, tiny_embedder_factory, reranker_factory,
           token_classifier_factory):
    models = {
        "clf": engine.load(distilbert.artifact),
        "t5": engine.load(t5_v1_1.artifact),
        "emb": engine.load(tiny_embedder_factory("mean").artifact),
        "ce": engine.load(reranker_factory("ce-bert").artifact),
        "ner": engine.load(token_classifier_factory("bert-ner").artifact),
    }
    with running_server(ServeConfig(), models) as (url, app):
        yield url, models, app


def _post(url: str, path: str, body: dict) -> httpx.Response:
    response = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response


def _in_process(models, name: str, text):
    """The in-process text call a client of each route compares its answer with."""
    model = models[name]
    if name == "clf":
        return model(text, top_k=None)
    if name == "t5":
        return model.generate([text], max_new_tokens=NEW_TOKENS)[0].text
    if name == "emb":
        return model.embed(text)[0].tolist()
    if name == "ce":
        return float(model.predict((QUERY, text), activation="none"))
    return model(text, aggregation_strategy="simple")


def _served(url: str, name: str, text):
    if name == "t5":
        body = {"inputs": text, "parameters": {"max_new_tokens": NEW_TOKENS}}
        return _post(url, "/models/t5/generate", body).json()["generated_text"]
    if name == "ce":
        body = {"query": QUERY, "texts": [text], "raw_scores": True}
        return _post(url, "/rerank", body).json()[0]["score"]
    answer = _post(url, f"/models/{name}", {"inputs": text}).json()
    return answer[0] if name == "clf" else answer  # the Inference API nests one text's labels


@pytest.mark.parametrize("name", ["clf", "t5", "emb", "ce", "ner"])
def test_served_answers_are_the_in_process_text_calls_exactly(served, name):
    url, models, _ = served
    for text in TEXTS:
        assert _served(url, name, text) == _in_process(models, name, text), text


def test_a_pair_is_served_as_the_in_process_pair_call(served):
    url, models, _ = served
    (labels,) = _post(url, "/models/clf", {"inputs": PAIR}).json()
    assert labels == models["clf"](PAIR, top_k=None)
    v2 = {"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": [PAIR["text"]]},
        {"name": "text_pair", "shape": [1], "datatype": "BYTES", "data": [PAIR["text_pair"]]}]}
    answer = _post(url, "/v2/models/clf/infer", v2).json()
    outputs = {output["name"]: output["data"] for output in answer["outputs"]}
    assert outputs["logits"] == models["clf"].logits(PAIR)[0].tolist()


def test_usage_counts_are_the_tokens_the_model_read(served):
    url, models, _ = served
    body = {"model": "emb", "input": TEXTS, "encoding_format": "float"}
    usage = _post(url, "/v1/embeddings", body).json()["usage"]
    counts = models["emb"].embed_with_token_counts(TEXTS)[1]
    assert usage["prompt_tokens"] == int(counts.sum())
    answer = _post(url, "/v1/rerank", {"model": "ce", "query": QUERY, "documents": TEXTS}).json()
    pairs = [(QUERY, text) for text in TEXTS]
    assert answer["usage"]["prompt_tokens"] == int(
        models["ce"].tokenizer.encode(pairs).attention_mask.sum())


class _CountingTokenizer:
    """A ``tokenizers.Tokenizer`` that counts the texts it encodes."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.texts = 0

    def encode(self, *args, **kwargs):
        self.texts += 1
        return self.inner.encode(*args, **kwargs)

    def encode_batch(self, texts, *args, **kwargs):
        self.texts += len(texts)
        return self.inner.encode_batch(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


# (model, path, body, texts in it): every task, pairs, and the embeddings that were tokenized
# three times before (truncate false), and an over-long text that a request asks to cut.
_REQUESTS = [
    ("clf", "/models/clf", {"inputs": TEXTS}, 3),
    ("clf", "/models/clf", {"inputs": [PAIR, PAIR]}, 2),
    ("clf", "/models/clf", {"inputs": ["word " * 600], "parameters": {"truncation": True}}, 1),
    ("t5", "/models/t5", {"inputs": TEXTS, "parameters": {"max_new_tokens": NEW_TOKENS}}, 3),
    ("emb", "/embed", {"inputs": TEXTS, "truncate": False}, 3),
    ("emb", "/v1/embeddings", {"model": "emb", "input": TEXTS}, 3),
    ("ce", "/rerank", {"query": QUERY, "texts": TEXTS}, 3),
    ("ce", "/v1/rerank", {"model": "ce", "query": QUERY, "documents": TEXTS}, 3),
    ("ner", "/models/ner", {"inputs": TEXTS}, 3),
]


@pytest.mark.parametrize(("name", "path", "body", "texts"), _REQUESTS,
                         ids=[f"{name}{path}" for name, path, *_ in _REQUESTS])
def test_each_text_is_tokenized_once_per_request(served, name, path, body, texts):
    url, _, app = served
    tokenizer = app.state.serving.models[name].handler.model.tokenizer
    originals = tokenizer._tokenizer, tokenizer._whole
    spies = _CountingTokenizer(originals[0]), _CountingTokenizer(originals[1])
    try:
        tokenizer._tokenizer, tokenizer._whole = spies
        _post(url, path, body)
    finally:
        tokenizer._tokenizer, tokenizer._whole = originals
    assert sum(spy.texts for spy in spies) == texts


@pytest.mark.parametrize("name", ["clf", "t5", "emb", "ce", "ner"])
def test_encoded_calls_are_the_text_calls(served, name):
    """The engine's call on encoded rows gives its text call's results (one batch per text,
    so no batch composition differs)."""
    _, models, _ = served
    model = models[name]
    texts = [(QUERY, text) for text in TEXTS] if name == "ce" else TEXTS
    rows = model.tokenizer.encode_rows(texts)
    if name == "clf":
        np.testing.assert_array_equal(model.logits_encoded(rows, 1), model.logits(texts, 1))
    elif name == "emb":
        np.testing.assert_array_equal(model.embed_encoded(rows, 1), model.embed(texts, 1))
    elif name == "ce":
        np.testing.assert_array_equal(model.pair_logits_encoded(rows, 1),
                                      model.pair_logits(texts, 1))
    elif name == "t5":
        args = GenerationArgs(max_new_tokens=NEW_TOKENS, batch_size=1)
        assert ([s.text for s in model.generate_encoded(rows, args)]
                == [s.text for s in model.generate(texts, NEW_TOKENS, batch_size=1)])
    else:
        ours, theirs = model.token_logits_encoded(rows, 1), model.token_logits(texts, 1)
        for mine, reference in zip(ours, theirs):
            assert mine.text == reference.text
            np.testing.assert_array_equal(mine.logits, reference.logits)
            np.testing.assert_array_equal(mine.offsets, reference.offsets)
