"""What one request may cost `onnx-engine serve`: real servers on 127.0.0.1 ephemeral ports.

A text over its model's input bound (``--max-input-tokens``, default the model's max length) is
413 naming its tokens, the bound and the fix, unless the request asks to truncate, and then the
answer is the engine's on the truncated text; a text is read only up to its character cap
(32 x the bound), so a 5 MB text costs what the bound needs; a lone surrogate is 422 on every
route; the memory of a maximal request is handed back; health answers while it runs.
"""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import httpx
import numpy as np
import psutil
import pytest
from serve_support import running_server

import engine
from engine.errors import InputError
from engine.options import RuntimeOptions
from engine.tasks.feature_extraction import Embedder
from engine.tokenization import char_cap
from onnx_engine.serving import body as body_module
from onnx_engine.serving.config import ServeConfig

# What `onnx-engine serve` loads models with (commands/serve.py): no spinning, a shrinking arena.
SERVER_OPTIONS = RuntimeOptions(spin_wait=False, arena_shrinkage=True)
LONG = "word " * 600  # 602 tokens for the BERT vocabularies here, 2401 for the tiny T5


@pytest.fixture(scope="module")
def models(distilbert, t5_v1_1, minilm_embedder):
    return {
        "clf": engine.load(distilbert.artifact, options=SERVER_OPTIONS),
        "t5": engine.load(t5_v1_1.artifact, options=SERVER_OPTIONS),
        "emb": Embedder.load(minilm_embedder.artifact, options=SERVER_OPTIONS),
    }


@pytest.fixture(scope="module")
def served(models):
    with running_server(ServeConfig(), models) as (url, app):
        yield url, app


def _tokens(model, text) -> int:
    return int(model.tokenizer.encode([text], truncation=False).attention_mask.sum())


def _post(url: str, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def _v2(texts, parameters=None, name="text") -> dict:
    return {"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(texts)], "data": texts}],
            "parameters": parameters or {}}


# route, body, model, bound, the fix the message names
OVER_LONG = {
    "hf classifier": ("/models/clf", {"inputs": LONG}, "clf", 512, '"truncation": true'),
    "hf pair": ("/models/clf", {"inputs": {"text": LONG, "text_pair": "short"}}, "clf", 512,
                '"truncation": true'),
    "v2 classifier": ("/v2/models/clf/infer", _v2([LONG]), "clf", 512, '"truncation": true'),
    "hf t5": ("/models/t5", {"inputs": LONG}, "t5", 512, '"truncation": true'),
    "tgi t5": ("/models/t5/generate", {"inputs": LONG}, "t5", 512, '"truncation": true'),
    "v2 t5": ("/v2/models/t5/infer", _v2([LONG]), "t5", 512, '"truncation": true'),
    "tei": ("/embed", {"inputs": [LONG]}, "emb", 256, '"truncate": true'),
    "openai": ("/v1/embeddings", {"model": "emb", "input": LONG}, "emb", 256,
               "no truncation flag"),
    "hf embedding": ("/models/emb", {"inputs": LONG}, "emb", 256, '"truncate": true'),
    "v2 embedding": ("/v2/models/emb/infer", _v2([LONG]), "emb", 256, '"truncate": true'),
}


@pytest.mark.parametrize("case", sorted(OVER_LONG))
def test_over_long_text_is_413_naming_tokens_bound_and_fix(served, models, case):
    url, _ = served
    path, body, name, bound, fix = OVER_LONG[case]
    text = body["inputs"]["text"] if case == "hf pair" else LONG
    pair = ("short",) if case == "hf pair" else ()
    tokens = _tokens(models[name], (text, *pair) if pair else text)
    answer = _post(url, path, body)
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert answer.json()["error_type"] == "validation"
    assert f"Text #0 has {tokens} tokens" in error and f"at most {bound}" in error, error
    assert "--max-input-tokens" in error and fix in error, error


def test_truncation_answers_what_the_engine_answers_on_the_truncated_text(served, models):
    url, _ = served
    clf, t5, emb = models["clf"], models["t5"], models["emb"]
    hf = _post(url, "/models/clf", {"inputs": [LONG], "parameters": {"truncation": True}})
    expected = clf([LONG], top_k=None)[0]
    assert [item["label"] for item in hf.json()[0]] == [item["label"] for item in expected]
    np.testing.assert_allclose([item["score"] for item in hf.json()[0]],
                               [item["score"] for item in expected], rtol=1e-5)
    v2 = _post(url, "/v2/models/clf/infer", _v2([LONG], {"truncation": True}))
    logits = next(o for o in v2.json()["outputs"] if o["name"] == "logits")["data"]
    np.testing.assert_allclose(logits, clf.logits([LONG])[0], rtol=1e-5, atol=1e-6)
    tei = _post(url, "/embed", {"inputs": [LONG], "truncate": True})
    np.testing.assert_allclose(tei.json(), emb.embed([LONG]), rtol=1e-5, atol=1e-6)
    generated = _post(url, "/models/t5", {"inputs": LONG, "parameters": {
        "truncation": True, "max_new_tokens": 8}})
    want = t5.generate([LONG], max_new_tokens=8, truncation=True)[0].text
    assert generated.json()[0]["generated_text"] == want


def test_t5_source_of_20000_chars_is_refused_and_truncation_accepted(served, models):
    """Issue 22 #1: one 20,000-character source used to be read whole (OOM-killed the server)."""
    url, _ = served
    source = "translate English to German: " + "the weather is nice and " * 840
    assert len(source) > 20_000 and len(source) > char_cap(512)
    refused = _post(url, "/models/t5/generate", {"inputs": source,
                                                  "parameters": {"max_new_tokens": 2}})
    assert refused.status_code == 413
    assert "more than" in refused.json()["error"] and "at most 512" in refused.json()["error"]
    cut = _post(url, "/models/t5/generate", {"inputs": source, "parameters": {
        "max_new_tokens": 4, "truncation": True}})
    want = models["t5"].generate([source], max_new_tokens=4, truncation=True)[0].text
    assert cut.status_code == 200 and cut.json()["generated_text"] == want


class _LengthSpy:
    """Stands in for a `tokenizers.Tokenizer` and records the longest text it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.longest = inner, 0

    def _saw(self, texts) -> None:
        for text in texts:
            halves = (text,) if isinstance(text, str) else text
            self.longest = max(self.longest, *map(len, halves))

    def encode(self, text, *args, **kwargs):
        self._saw([text])
        return self.inner.encode(text, *args, **kwargs)

    def encode_batch(self, texts, *args, **kwargs):
        self._saw(texts)
        return self.inner.encode_batch(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_5mb_text_is_refused_having_tokenized_only_its_character_cap(served, models):
    """Issue 22 #2-#3: one 5 MB text was tokenized whole (RSS 207 -> 1,059 MB, kept)."""
    url, app = served
    tokenizer = app.state.serving.models["clf"].handler.model.tokenizer
    spies = _LengthSpy(tokenizer._whole), _LengthSpy(tokenizer._tokenizer)
    originals = tokenizer._whole, tokenizer._tokenizer
    huge = "a few words of text " * 250_000  # 5,000,000 characters
    try:
        tokenizer._whole, tokenizer._tokenizer = spies
        refused = _post(url, "/models/clf", {"inputs": huge})
        cut = _post(url, "/models/clf", {"inputs": huge, "parameters": {"truncation": True}})
    finally:
        tokenizer._whole, tokenizer._tokenizer = originals
    assert refused.status_code == 413 and "has more than" in refused.json()["error"]
    assert cut.status_code == 200
    assert max(spy.longest for spy in spies) == char_cap(512)  # of 5,000,000
    # The cut kept the engine's truncated tokens: the same labels and scores as any prefix
    # long enough to be truncated.
    expected = models["clf"]([huge[:100_000]], top_k=None)[0]
    np.testing.assert_allclose([item["score"] for item in cut.json()[0]],
                               [item["score"] for item in expected], rtol=1e-5)


def test_a_run_without_word_boundaries_past_the_cap_is_refused(served):
    url, _ = served
    answer = _post(url, "/models/clf", {"inputs": "a" * 20_000,
                                        "parameters": {"truncation": True}})
    assert answer.status_code == 413
    assert "too few separate words" in answer.json()["error"], answer.text


SURROGATE_BODIES = {
    "hf classifier": ("/models/clf", '{"inputs": "a\\ud800b"}'),
    "hf pair": ("/models/clf", '{"inputs": {"text": "a", "text_pair": "b\\udfffc"}}'),
    "v2 classifier": ("/v2/models/clf/infer", '{"inputs": [{"name": "text", "datatype": '
                      '"BYTES", "shape": [1], "data": ["a\\ud800b"]}]}'),
    "v2 pair": ("/v2/models/clf/infer", '{"inputs": [{"name": "text", "datatype": "BYTES", '
                '"shape": [1], "data": ["a"]}, {"name": "text_pair", "datatype": "BYTES", '
                '"shape": [1], "data": ["\\ud800"]}]}'),
    "hf t5": ("/models/t5", '{"inputs": ["ok", "a\\ud800b"]}'),
    "tgi t5": ("/models/t5/generate", '{"inputs": "a\\ud800b"}'),
    "v2 t5": ("/v2/models/t5/infer", '{"inputs": [{"name": "text", "datatype": "BYTES", '
              '"shape": [1], "data": ["a\\ud800b"]}]}'),
    "tei": ("/embed", '{"inputs": "a\\ud800b"}'),
    "tei list": ("/embed", '{"inputs": ["ok", "a\\ud800b"]}'),
    "openai": ("/v1/embeddings", '{"model": "emb", "input": "a\\ud800b"}'),
    "openai list": ("/v1/embeddings", '{"model": "emb", "input": ["ok", "a\\ud800b"]}'),
    "hf embedding": ("/models/emb", '{"inputs": "a\\ud800b"}'),
    "v2 embedding": ("/v2/models/emb/infer", '{"inputs": [{"name": "text", "datatype": '
                     '"BYTES", "shape": [1], "data": ["a\\ud800b"]}]}'),
}


@pytest.mark.parametrize("case", sorted(SURROGATE_BODIES))
def test_lone_surrogate_is_422_on_every_route(served, case):
    """Issue 22 #11: the OpenAI and TEI routes answered 500 with a tokenizers TypeError."""
    url, _ = served
    path, raw = SURROGATE_BODIES[case]
    answer = httpx.post(f"{url}{path}", content=raw.encode(), timeout=30,
                        headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert "lone surrogate" in answer.json()["error"] and "UTF-8" in answer.json()["error"]


def test_a_lone_surrogate_outside_the_texts_never_breaks_the_answer(served):
    """A V2 ``id`` is echoed in the answer: it must be valid Unicode (422). A model name is quoted
    in the 404: the answer escapes it rather than fail to encode (both were 500s)."""
    url, _ = served
    v2 = ('{"id": "a\\ud800b", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], '
          '"data": ["fine"]}]}')
    headers = {"content-type": "application/json"}
    answer = httpx.post(f"{url}/v2/models/clf/infer", content=v2.encode(), headers=headers,
                        timeout=30)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].startswith('"id" is not valid Unicode: character 1')
    openai = '{"model": "a\\ud800b", "input": "fine"}'
    answer = httpx.post(f"{url}/v1/embeddings", content=openai.encode(), headers=headers,
                        timeout=30)
    assert answer.status_code == 404, answer.text
    assert "a\\ud800b" in json.loads(answer.content.decode("utf-8"))["error"]


def test_max_input_tokens_sets_the_bound_per_model(models):
    """16 tokens for every model; truncation cuts there (T5 too): "word " x 50 truncated is
    "word " x 14 (+ [CLS] [SEP]) for BERT."""
    with running_server(ServeConfig(max_input_tokens=16), models) as (url, _):
        long_text, clf, t5 = "word " * 50, models["clf"], models["t5"]
        refused = _post(url, "/models/clf", {"inputs": long_text})
        assert refused.status_code == 413 and "has 52 tokens" in refused.json()["error"]
        assert "at most 16 (--max-input-tokens)" in refused.json()["error"]
        cut = _post(url, "/models/clf", {"inputs": long_text, "parameters": {"truncation": True}})
        expected = clf(["word " * 14], top_k=None)[0]
        np.testing.assert_allclose([item["score"] for item in cut.json()[0]],
                                   [item["score"] for item in expected], rtol=1e-5)
        generated = _post(url, "/models/t5/generate", {"inputs": long_text, "parameters": {
            "truncation": True, "max_new_tokens": 6}})
        # The tiny T5 spells "word" in 4 tokens: its first 15 tokens are "word word word wor".
        whole = t5.tokenizer.encode([long_text], truncation=False).input_ids[0].tolist()
        prefix = "word word word wor"
        assert t5.tokenizer.encode([prefix]).input_ids[0].tolist() == whole[:15] + whole[-1:]
        want = t5.generate([prefix], max_new_tokens=6)[0].text
        assert generated.json()["generated_text"] == want
        assert _post(url, "/models/clf", {"inputs": "word " * 14}).status_code == 200
    # T5 reads past its 512 (relative positions); an encoder's bound stays its max length.
    with running_server(ServeConfig(max_input_tokens=700), models) as (url, app):
        handlers = {name: served.handler for name, served in app.state.serving.models.items()}
        assert handlers["t5"].max_input_tokens == 700 and handlers["clf"].max_input_tokens == 512
        source = "word " * 150  # 601 tokens for the tiny T5: past its 512, within 700
        assert 512 < _tokens(t5, source) <= 700
        whole = _post(url, "/models/t5/generate", {"inputs": source, "parameters": {
            "max_new_tokens": 4}})
        assert whole.json()["generated_text"] == t5.generate([source], max_new_tokens=4)[0].text
    with pytest.raises(InputError, match="max_input_tokens must be a positive integer"):
        ServeConfig(max_input_tokens=0)
    with pytest.raises(InputError, match="at most max_batch_tokens=8192, got 16661"):
        ServeConfig(max_input_tokens=16661)
    assert ServeConfig(max_input_tokens=16661, max_batch_tokens=16661).max_input_tokens == 16661


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_memory_of_a_maximal_request_is_bounded_and_handed_back(served):
    """64 texts of 256 tokens to MiniLM (the most one request may send): two batches of 32 x 256
    tokens. The bound on the peak, 1 GiB over the RSS before, is about twice the activations of
    one such batch as ORT's arena holds them (+530 MB measured when kept); afterwards the arena
    shrinks, so the RSS must come back within 128 MB of where it was (+36 MB measured)."""
    url, _ = served
    texts = ["word " * 300] * 64
    body = {"inputs": texts, "truncate": True}
    assert _post(url, "/embed", {"inputs": ["warm up"]}).status_code == 200
    before = _rss_mb()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak.append(_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        answer = _post(url, "/embed", body)
    finally:
        done.set()
        sampler.join(timeout=10)
    after = _rss_mb()
    assert answer.status_code == 200 and len(answer.json()) == 64
    assert max(peak) - before < 1024, (before, max(peak), after)
    assert after - before < 128, (before, max(peak), after)


class _HealthProbe:
    """Wraps a handler method so that, when the big request reaches it, a health check is sent
    and the method waits (bounded) for its answer: it can only arrive meanwhile if the method
    runs off the event loop. ``answered`` records, per call, whether it did."""

    def __init__(self, url: str, method) -> None:
        self.url, self.method, self.answered = url, method, []

    def __call__(self, *args, **kwargs):
        health = threading.Thread(target=self._check)
        self._done = threading.Event()
        health.start()
        self.answered.append(self._done.wait(timeout=10))
        result = self.method(*args, **kwargs)
        health.join(timeout=60)
        return result

    def _check(self) -> None:
        if httpx.get(f"{self.url}/health", timeout=60).status_code == 200:
            self._done.set()


def test_health_answers_while_a_maximal_embed_is_parsed_tokenized_and_encoded(served,
                                                                            monkeypatch):
    """Issue 22 #4: 64 x 100 KB to /embed held the event loop (health waited 5.7-7.2 s). Health
    must be answered while the big request's body is parsed, while its texts are measured
    against the bound and while its answer is built (normalized, JSON-encoded): all three run
    in a thread for such a request."""
    url, app = served
    handler = app.state.serving.models["emb"].handler
    body = {"inputs": [f"text {i} " + "many words here " * 6_250 for i in range(64)],
            "truncate": True}  # 64 x 100 KB: the body limit's worth of characters
    probes = {"bounded": _HealthProbe(url, handler.bounded),
              "vectors": _HealthProbe(url, handler.vectors)}
    parse = _HealthProbe(url, json.loads)
    monkeypatch.setattr(body_module, "json", SimpleNamespace(loads=parse))
    for name, probe in probes.items():
        setattr(handler, name, probe)
    try:
        answer = _post(url, "/embed", body)
    finally:
        for name in probes:
            delattr(handler, name)
    assert answer.status_code == 200 and len(answer.json()) == 64
    assert {name: probe.answered for name, probe in {**probes, "parsed": parse}.items()} == {
        "bounded": [True], "vectors": [True], "parsed": [True]}
