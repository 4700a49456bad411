"""`onnx-engine serve` end to end: real servers on 127.0.0.1 ephemeral ports, unmodified clients.

Expected answers come from the same engine models called in-process, so these tests check that
serving (batching, protocols, scattering) changes nothing: labels and generated texts exactly,
float outputs within 1e-5 relative (batch composition changes padding; fp32 kernels may then
sum in another order).
"""

from __future__ import annotations

import asyncio
import json
import struct
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from huggingface_hub import InferenceClient
from serve_support import held_connection, metric_value, running_server

from onnx_engine.serving.config import ServeConfig

API_KEY = "test-key-7c1d"
TEXTS = ["a great movie", "the plot was dull and far too long", "ok", "héllo wörld 🙂", "x " * 40]
SOURCES = ["translate English to German: hello", "summarize: the cat sat on the mat", "hi"]


@pytest.fixture(scope="session")
def server(serve_models):
    """Default limits, no key: the server most tests talk to."""
    with running_server(ServeConfig(), serve_models) as (url, _):
        yield url


@pytest.fixture(scope="session")
def strict_server(serve_models):
    """API key, two concurrent requests, small bodies, few short texts, a short timeout."""
    config = ServeConfig(api_key=API_KEY, max_concurrent_requests=2, max_body_bytes=2048,
                         max_client_batch_size=4, max_input_chars=100, request_timeout_s=0.1)
    with running_server(config, serve_models) as (url, _):
        yield url


def _host(url: str) -> str:
    return url.split("//", 1)[1]


def _text_input(texts, binary: bool, name: str = "text") -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_classifier(server, serve_models, binary):
    clf = serve_models["clf"]
    client = triton.InferenceServerClient(_host(server))
    outputs = [triton.InferRequestedOutput(name, binary_data=binary)
               for name in ("label", "score", "logits", "probabilities")]
    result = client.infer("clf", [_text_input(TEXTS, binary)], outputs=outputs, request_id="req-1")
    logits = clf.logits(TEXTS)
    probabilities = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(result.as_numpy("logits"), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities,
                               rtol=1e-5, atol=1e-6)
    labels = [label.decode() if isinstance(label, bytes) else label
              for label in result.as_numpy("label")]
    assert labels == [clf.labels[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(result.as_numpy("score"), probabilities.max(axis=1), rtol=1e-5)
    assert result.get_response()["id"] == "req-1"


def test_tritonclient_top_k_and_pairs(server, serve_models):
    clf = serve_models["clf"]
    client = triton.InferenceServerClient(_host(server))
    pairs = [_text_input(TEXTS[:2], True), _text_input(TEXTS[2:4], True, "text_pair")]
    result = client.infer("clf", pairs, parameters={"top_k": 2, "function_to_apply": "sigmoid"})
    expected = clf([{"text": a, "text_pair": b} for a, b in zip(TEXTS[:2], TEXTS[2:4])],
                   top_k=2, function_to_apply="sigmoid")
    assert result.as_numpy("label").shape == (2, 2)
    for row_labels, row_scores, want in zip(result.as_numpy("label"), result.as_numpy("score"),
                                            expected):
        assert [label.decode() for label in row_labels] == [item["label"] for item in want]
        np.testing.assert_allclose(row_scores, [item["score"] for item in want], rtol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_t5(server, serve_models, binary):
    lm = serve_models["t5"]
    client = triton.InferenceServerClient(_host(server))
    settings = {"max_new_tokens": 6, "num_beams": 2, "length_penalty": 0.8}
    result = client.infer("t5", [_text_input(SOURCES, binary)], parameters=settings,
                          outputs=[triton.InferRequestedOutput(n, binary_data=binary)
                                   for n in ("generated_text", "sequence_score")])
    expected = lm.generate(SOURCES, output_scores=True, **settings)
    texts = [t.decode() if isinstance(t, bytes) else t for t in result.as_numpy("generated_text")]
    assert texts == [sequence.text for sequence in expected]
    np.testing.assert_allclose(result.as_numpy("sequence_score"),
                               [sequence.score for sequence in expected], rtol=1e-4)


def test_v2_metadata_and_health(server):
    client = triton.InferenceServerClient(_host(server))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("clf") and client.is_model_ready("t5")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("t5")
    assert [o["name"] for o in metadata["outputs"]] == ["generated_text", "sequence_score"]
    assert httpx.get(f"{server}/v2/models/nope/ready").status_code == 404


def test_curl_shaped_binary_request(server, serve_models):
    """The binary extension by hand: JSON header, then 4-byte length-prefixed UTF-8 strings."""
    texts = ["ok", "héllo"]
    blob = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "outputs": [{"name": "logits"}]}).encode()
    response = httpx.post(f"{server}/v2/models/clf/infer", content=header + blob,
                          headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    body = response.json()
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(2, -1),
                               serve_models["clf"].logits(texts), rtol=1e-5, atol=1e-6)
    for header_name in ("x-queue-time", "x-inference-time", "x-total-time"):
        assert float(response.headers[header_name]) >= 0


def test_inference_client_classification(server, serve_models):
    clf = serve_models["clf"]
    client = InferenceClient(model=f"{server}/models/clf")
    answer = client.text_classification("a great movie")
    expected = clf("a great movie", top_k=None)
    assert [(item.label, pytest.approx(item.score, rel=1e-5)) for item in answer] == [
        (item["label"], item["score"]) for item in expected
    ]
    (best,) = client.text_classification("a great movie", top_k=1, function_to_apply="none")
    want = clf("a great movie", top_k=1, function_to_apply="none")[0]
    assert best.label == want["label"] and best.score == pytest.approx(want["score"], rel=1e-5)


def test_inference_client_generation(server, serve_models):
    lm = serve_models["t5"]
    client = InferenceClient(model=f"{server}/models/t5")
    want = lm.generate([SOURCES[1]], max_new_tokens=5)[0].text
    generate_parameters = {"max_new_tokens": 5}
    summary = client.summarization(SOURCES[1], generate_parameters=generate_parameters)
    assert summary.summary_text == want
    translation = client.translation(SOURCES[1], generate_parameters=generate_parameters)
    assert translation.translation_text == want
    # temperature is refused with transformers' model_kwargs message; the client drops it, retries.
    with pytest.warns(UserWarning, match="temperature"):
        assert client.text_generation(SOURCES[1], max_new_tokens=5, temperature=0.7) == want


def test_tgi_generate_route(server, serve_models):
    want = serve_models["t5"].generate([SOURCES[0]], max_new_tokens=4, num_beams=3)[0].text
    response = httpx.post(f"{server}/models/t5/generate", json={
        "inputs": SOURCES[0], "parameters": {"max_new_tokens": 4, "num_beams": 3}})
    assert response.status_code == 200 and response.json() == {"generated_text": want}
    refused = httpx.post(f"{server}/models/t5/generate", json={
        "inputs": SOURCES[0], "parameters": {"top_p": 0.9, "do_sample": False, "seed": 3}})
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "The following `model_kwargs` are not used by the model: ['top_p', 'seed']")


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/models/clf", b"{not json", 422, "not valid JSON"),
    ("/models/clf", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422, "not valid JSON"),
    ("/models/clf", {"inputs": 3}, 422, "is int"),
    ("/models/clf", {"inputs": "x", "parameters": {"top_k": 0}}, 422, "top_k"),
    ("/models/clf", {"inputs": "x", "parameters": {"function_to_apply": "tanh"}}, 422, "tanh"),
    ("/models/t5", b'{"inputs": "ok \\ud800"}', 422, "lone surrogate"),
    ("/v2/models/clf/infer", b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", '
     b'"data": ["\\ud800"]}]}', 422, "lone surrogate"),
    ("/v2/models/t5/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                         "data": ["a"]}], "parameters": {"truncation": "yes"}},
     422, "truncation"),
    ("/models/t5", {"inputs": "x", "parameters": {"num_beams": 0}}, 422, "num_beams"),
    ("/models/t5", {"inputs": "x", "parameters": {"max_new_tokens": "5"}}, 422, "max_new_tokens"),
    ("/models/t5", {"inputs": "x", "parameters": {"max_new_tokens": 10**9}}, 422, "at most"),
    ("/models/t5", {"inputs": "x", "parameters": {"num_beams": 100}}, 422,
     "--max-client-batch-size"),
    ("/models/t5", {"inputs": "x", "parameters": {"num_beams": 10**6}}, 422, "limit of 512"),
    ("/models/t5", b'{"inputs": "x", "parameters": {"length_penalty": NaN}}', 422, "finite"),
    ("/models/clf/generate", {"inputs": "x"}, 404, "generate"),
    ("/models/nope", {"inputs": "x"}, 404, "clf, t5"),
    ("/v2/models/clf/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32",
                                          "data": [1.0]}]}, 422, "BYTES"),
    ("/v2/models/clf/infer", {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                          "data": ["a"]}]}, 422, "shape says 2"),
    ("/v2/models/t5/infer", {"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES",
                                         "data": []}]}, 422, "empty list"),
    ("/v2/models/t5/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                         "data": ["a"]}], "parameters": {"top_p": 1}}, 422,
     "top_p"),
    ("/v2/models/clf/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                          "data": ["a"]}], "outputs": [{"name": "x"}]}, 422, "x"),
])
def test_errors(server, path, body, status, fragment):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{server}{path}", content=content)
    assert response.status_code == status, response.text
    error = response.json()
    assert fragment in error["error"]
    assert error["error_type"] == "validation"


def test_bad_request_among_concurrent_ones_fails_alone(server, serve_models):
    """A request with invalid text sent with good ones gets 422; the others get their results.
    (Bad input found inside a merged batch is isolated the same way: test_serve_batcher.)"""
    want = serve_models["t5"].generate(SOURCES, max_new_tokens=3)

    async def burst():
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            bodies = [json.dumps({"inputs": s, "parameters": {"max_new_tokens": 3}}).encode()
                      for s in SOURCES]
            bodies.append(b'{"inputs": "\\udc80", "parameters": {"max_new_tokens": 3}}')
            return await asyncio.gather(*(client.post("/models/t5", content=b) for b in bodies))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200, 200, 200, 422]
    assert [r.json()[0]["generated_text"] for r in responses[:3]] == [s.text for s in want]


def test_limits_413_422_504(strict_server, serve_models, monkeypatch):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    big = httpx.post(f"{strict_server}/models/clf", headers=auth,
                     json={"inputs": "word " * 1000})
    assert big.status_code == 413 and big.json()["error_type"] == "validation"
    many = httpx.post(f"{strict_server}/models/clf", headers=auth, json={"inputs": ["a"] * 5})
    assert many.status_code == 422 and "at most 4" in many.json()["error"]
    long = httpx.post(f"{strict_server}/models/clf", headers=auth, json={"inputs": "a" * 101})
    assert long.status_code == 422 and "at most 100" in long.json()["error"]
    graphs = serve_models["t5"].graphs
    encode = graphs.encode

    def slow_encode(*args):  # longer than the 0.1 s timeout, however fast the machine
        time.sleep(0.5)
        return encode(*args)

    monkeypatch.setattr(graphs, "encode", slow_encode)
    slow = httpx.post(f"{strict_server}/models/t5", headers=auth, timeout=30, json={
        "inputs": SOURCES, "parameters": {"max_new_tokens": 8}})
    assert slow.status_code == 504 and slow.json()["error_type"] == "timeout", slow.text


def test_partial_bodies_take_no_slot(strict_server):
    """Requests whose body has not arrived are not admitted (429 fail-fast with admitted requests:
    tests/test_serve_hardening.py)."""
    holders = [held_connection(strict_server, f"Authorization: Bearer {API_KEY}\r\n")
               for _ in range(3)]
    try:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        response = httpx.post(f"{strict_server}/models/clf", headers=auth, json={"inputs": "x"})
        assert response.status_code == 200
        assert metric_value(strict_server, "onnx_engine_requests_in_flight", headers=auth) == 0
    finally:
        for sock in holders:
            sock.close()


def test_api_key(strict_server):
    bad = {"Authorization": "Bearer wrong"}
    for path in ("/v2/models/clf", "/metrics"):
        for headers in ({}, bad):
            response = httpx.get(f"{strict_server}{path}", headers=headers)
            assert response.status_code == 401 and API_KEY not in response.text
    assert httpx.post(f"{strict_server}/models/clf", json={"inputs": "x"}).status_code == 401
    assert httpx.get(f"{strict_server}/v2/health/ready").status_code == 200  # probes stay open
    client = triton.InferenceServerClient(_host(strict_server))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    result = client.infer("clf", [_text_input(["ok"], True)], headers=headers)
    assert result.as_numpy("label").shape == (1,)
    with pytest.raises(Exception, match=r"401|API key"):
        client.infer("clf", [_text_input(["ok"], True)])
    answer = InferenceClient(model=f"{strict_server}/models/clf", token=API_KEY)
    assert len(answer.text_classification("ok")) == 2


def test_concurrent_clients_get_their_own_answers(server, serve_models):
    """64 requests at once (one text each, all different) are batched and scattered right."""
    clf = serve_models["clf"]
    texts = [f"review {i}: " + "good " * (i % 7) + "bad " * (i % 5) for i in range(64)]
    want = clf(texts, top_k=None)
    before = metric_value(server, "onnx_engine_batch_size_count", {"model": "clf"})

    async def burst():
        async with httpx.AsyncClient(base_url=server, timeout=30,
                                     limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*(client.post("/models/clf", json={"inputs": t})
                                          for t in texts))

    responses = asyncio.run(burst())
    for response, expected in zip(responses, want):
        assert response.status_code == 200
        (answer,) = response.json()
        assert [item["label"] for item in answer] == [item["label"] for item in expected]
        np.testing.assert_allclose([item["score"] for item in answer],
                                   [item["score"] for item in expected], rtol=1e-5)
    batches = metric_value(server, "onnx_engine_batch_size_count", {"model": "clf"}) - before
    assert batches < len(texts), "no two concurrent requests shared an engine call"


def test_no_cors_headers_by_default(server):
    response = httpx.post(f"{server}/models/clf", json={"inputs": "x"},
                          headers={"Origin": "https://app.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_loadtest_checks_every_answer(server, distilbert, tmp_path, capsys):
    """The load test's own check must catch a wrong answer, and pass the server's real ones."""
    from onnx_engine.cli import main
    from onnx_engine.loadtest.protocols import Protocol
    from onnx_engine.loadtest.reference import Reference
    from onnx_engine.loadtest.runner import run_level

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:4]) + "\n", encoding="utf-8")
    out = tmp_path / "result.json"
    code = main(["loadtest", server, "--model", "clf", "--artifact", str(distilbert.artifact),
                 "--concurrency", "1,4", "--duration", "0.5", "--max-requests", "40",
                 "--texts", str(texts), "--protocol", "v2", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    levels = json.loads(out.read_text())["servers"]["server"]["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    assert all(level["statuses"].get("200", 0) > 0 and level["mixed_up"] == level["lost"] == 0
               and level["mean_batch_size"] >= 1 for level in levels)

    wrong = Reference(dict.fromkeys(TEXTS, ("NO-SUCH-LABEL", 0.5)), "text-classification")
    level = asyncio.run(run_level(server, Protocol("hf", "text-classification", "clf", {}),
                                  TEXTS, wrong, 2, 5.0, 6, {})).result()
    assert level.requests == 6 and level.mixed_up == 6


@pytest.mark.parametrize("argument, message", [
    ("bad name=x", "not usable in a URL"),
    ("clf=/no/such/artifact", "does not exist"),
])
def test_serve_command_errors(argument, message, capsys):
    from onnx_engine.cli import main

    assert main(["serve", argument, "--port", "0"]) == 2
    assert message in capsys.readouterr().err


def test_engine_and_cli_import_no_server_dependency():
    import subprocess
    import sys

    code = ("import sys, engine, onnx_engine.cli as cli; cli.build_parser(); "
            "print([m for m in ('starlette', 'uvicorn', 'prometheus_client', 'httpx', 'grpc', "
            "'google.protobuf') "
            "if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_concurrent_generation_settings_never_share_a_batch(server, serve_models):
    """Requests with different generation parameters, sent at once, each get their own setting."""
    lm = serve_models["t5"]
    settings = [{"max_new_tokens": 2}, {"max_new_tokens": 5}, {"max_new_tokens": 5, "num_beams": 2}]
    cases = [(source, setting) for source in SOURCES for setting in settings]
    want = [lm.generate([source], **setting)[0].text for source, setting in cases]

    async def burst():
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/models/t5", json={"inputs": source, "parameters": setting})
                for source, setting in cases))

    responses = asyncio.run(burst())
    assert [r.json()[0]["generated_text"] for r in responses] == want


def test_failures_are_counted_by_error_type(server):
    labels = {"error_type": "validation", "model": "clf"}
    before = metric_value(server, "onnx_engine_request_failure_total", labels)
    assert httpx.post(f"{server}/models/clf", json={"inputs": 3}).status_code == 422
    assert metric_value(server, "onnx_engine_request_failure_total", labels) == before + 1
