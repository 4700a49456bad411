"""Token streaming on the TGI routes: a real server on 127.0.0.1, ``InferenceClient`` unmodified.

Expected tokens come from the same engine model called in-process (greedy decoding is
deterministic, and a row's tokens do not depend on the rows it is batched with), so streams are
held to exact ids and texts; log-probabilities within 1e-5 relative (a different batch composition
may sum fp32 logits in another order). Batching is arranged, not hoped for: a gate in the
encoder run holds the worker thread while the streams queue behind it.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import ValidationError as HubValidationError
from serve_support import metric_value, running_server, wait_until

from onnx_engine.serving.config import ServeConfig

LONG = ["translate English to German: The cat sat on the mat.", "Hello world", "a",
        "Café naïve résumé: 東京タワーは高い。"]  # these run past 40 tokens without EOS
SHORT = "summarize: The committee met on Tuesday and agreed to publish the report next month."
NEW_TOKENS = 24
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def server(serve_models):
    with running_server(ServeConfig(), serve_models) as (url, _):
        yield url


@pytest.fixture
def lm(serve_models):
    return serve_models["t5"]


class Gate:
    """Holds the first encoder run after it is armed (the worker thread) until released."""

    def __init__(self, monkeypatch, graphs) -> None:
        self.entered, self.released = threading.Event(), threading.Event()
        self.steps = 0  # decoder with-past steps run since the gate was made
        encode, next_step = graphs.encode, graphs.next_step

        def gated_encode(*args):
            if not self.entered.is_set():
                self.entered.set()
                self.released.wait(TIMEOUT_S)
            return encode(*args)

        def counted_step(*args):
            self.steps += 1
            return next_step(*args)

        monkeypatch.setattr(graphs, "encode", gated_encode)
        monkeypatch.setattr(graphs, "next_step", counted_step)


def _client(url: str) -> InferenceClient:
    return InferenceClient(model=f"{url}/models/t5", timeout=TIMEOUT_S)


def _stream(url: str, source: str, **parameters) -> list:
    return list(_client(url).text_generation(source, stream=True, details=True, **parameters))


def _assert_streams_like_generate(events, lm, source: str) -> None:
    want = lm.generate([source], max_new_tokens=NEW_TOKENS, output_scores=True)[0]
    assert [event.token.id for event in events] == want.token_ids.tolist()
    assert [event.token.logprob for event in events] == pytest.approx(
        want.token_logprobs.tolist(), rel=1e-5)
    assert [event.index for event in events] == list(range(1, len(events) + 1))
    assert all(e.generated_text is None and e.details is None for e in events[:-1])
    assert events[-1].generated_text == want.text
    assert "".join(e.token.text for e in events if not e.token.special) == want.text


def _hold_the_worker(url: str, gate: Gate) -> threading.Thread:
    """A request (of other settings than the streams') whose batch waits at the gate."""
    blocker = threading.Thread(target=httpx.post, args=(f"{url}/models/t5",), kwargs={
        "json": {"inputs": "hi", "parameters": {"max_new_tokens": 1}}, "timeout": TIMEOUT_S})
    blocker.start()
    assert gate.entered.wait(TIMEOUT_S)
    return blocker


@pytest.mark.parametrize("source", [LONG[0], SHORT], ids=["runs-to-length", "ends-at-eos"])
def test_stream_equals_the_whole_answer(server, lm, source):
    client = _client(server)
    whole = client.text_generation(source, max_new_tokens=NEW_TOKENS, details=True)
    events = _stream(server, source, max_new_tokens=NEW_TOKENS)
    _assert_streams_like_generate(events, lm, source)
    assert [(e.token.id, e.token.text, e.token.special) for e in events] == [
        (t.id, t.text, t.special) for t in whole.details.tokens]
    assert events[-1].generated_text == whole.generated_text
    details = events[-1].details
    finish = "eos_token" if source == SHORT else "length"
    assert (details.finish_reason, details.generated_tokens) == (finish, len(events))
    assert details.input_length == len(lm.tokenizer.encode([source]).input_ids[0])
    assert whole.details.finish_reason == finish
    if source == SHORT:
        assert events[-1].token.special and events[-1].token.text == "</s>"
    texts = list(client.text_generation(source, max_new_tokens=NEW_TOKENS, stream=True))
    assert texts == [e.token.text for e in events]


def test_generate_stream_route_sends_tgi_events(server, lm):
    events = []
    with httpx.stream("POST", f"{server}/models/t5/generate_stream", timeout=TIMEOUT_S,
                      json={"inputs": LONG[1], "parameters": {"max_new_tokens": 3}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line:
                assert line.startswith("data:")
                events.append(json.loads(line[len("data:"):]))
    assert [set(event) for event in events] == [
        {"index", "token", "generated_text", "details", "top_tokens"}] * 3
    assert all(set(e["token"]) == {"id", "text", "logprob", "special"} for e in events)
    assert [e["token"]["id"] for e in events] == lm.generate(
        LONG[1], max_new_tokens=3)[0].token_ids.tolist()


@pytest.mark.parametrize("path", ["/models/t5/generate_stream", "/models/t5/generate"])
def test_beam_search_streams_only_its_final_text(server, lm, path):
    want = lm.generate(LONG[2], max_new_tokens=6, num_beams=3, output_scores=True)[0]
    body = {"inputs": LONG[2], "stream": True,
            "parameters": {"max_new_tokens": 6, "num_beams": 3, "details": True}}
    response = httpx.post(f"{server}{path}", json=body, timeout=TIMEOUT_S)
    lines = [line for line in response.text.split("\n") if line]
    assert response.status_code == 200 and len(lines) == 1
    event = json.loads(lines[0][len("data:"):])
    assert event["generated_text"] == want.text
    assert event["token"]["id"] == int(want.token_ids[-1])
    assert event["token"]["logprob"] == pytest.approx(float(want.token_logprobs[-1]), rel=1e-5)
    assert event["details"]["generated_tokens"] == len(want.token_ids)


def test_concurrent_streams_share_a_batch_and_each_gets_its_own_tokens(
    server, lm, monkeypatch
):
    gate = Gate(monkeypatch, lm.graphs)
    before = [metric_value(server, f"onnx_engine_batch_size_{n}", {"model": "t5"})
              for n in ("count", "sum")]
    blocker = _hold_the_worker(server, gate)
    sources = [*LONG, SHORT]
    with ThreadPoolExecutor(len(sources) + 1) as pool:
        streams = [pool.submit(_stream, server, s, max_new_tokens=NEW_TOKENS) for s in sources]
        whole = pool.submit(httpx.post, f"{server}/models/t5", timeout=TIMEOUT_S, json={
            "inputs": LONG[0], "parameters": {"max_new_tokens": NEW_TOKENS}})
        wait_until(lambda: metric_value(server, "onnx_engine_queue_size", {"model": "t5"})
                   == len(sources) + 1, "every stream queued")
        gate.released.set()
        for source, stream in zip(sources, streams):
            _assert_streams_like_generate(stream.result(TIMEOUT_S), lm, source)
        assert whole.result(TIMEOUT_S).json()[0]["generated_text"] == lm.generate(
            LONG[0], max_new_tokens=NEW_TOKENS)[0].text
    blocker.join(TIMEOUT_S)
    count, total = (metric_value(server, f"onnx_engine_batch_size_{n}", {"model": "t5"}) - b
                    for n, b in zip(("count", "sum"), before))
    assert (count, total) == (2, 1 + len(sources) + 1)  # the blocker's batch, then one batch


def test_a_disconnected_stream_stops_its_row_and_the_others_finish(server, lm, monkeypatch):
    """The long stream's client leaves after one token: its row is retired, so the batch ends
    when the short stream ends (EOS after a few tokens), not after the long one's 200."""
    gate = Gate(monkeypatch, lm.graphs)
    blocker = _hold_the_worker(server, gate)
    parameters = {"max_new_tokens": 200}
    first: list[str] = []

    def leave_after_one_token() -> None:
        with httpx.stream("POST", f"{server}/models/t5/generate_stream", timeout=TIMEOUT_S,
                          json={"inputs": LONG[0], "parameters": parameters}) as response:
            first.append(next(line for line in response.iter_lines() if line))

    with ThreadPoolExecutor(2) as pool:
        leaving = pool.submit(leave_after_one_token)
        staying = pool.submit(_stream, server, SHORT, **parameters)
        wait_until(lambda: metric_value(server, "onnx_engine_queue_size", {"model": "t5"}) == 2,
                   "both streams queued")
        gate.released.set()
        leaving.result(TIMEOUT_S)
        events = staying.result(TIMEOUT_S)
    blocker.join(TIMEOUT_S)
    want = lm.generate(SHORT, max_new_tokens=200)[0]
    assert [e.token.id for e in events] == want.token_ids.tolist()
    assert events[-1].generated_text == want.text
    assert json.loads(first[0][len("data:"):])["token"]["id"] == int(
        lm.generate(LONG[0], max_new_tokens=1)[0].token_ids[0])
    wait_until(lambda: metric_value(server, "onnx_engine_requests_in_flight") == 0,
               "the left stream released its slot")
    assert gate.steps < 100  # 200 had the row kept decoding
    # The server is healthy: the next stream is answered in full.
    _assert_streams_like_generate(_stream(server, LONG[1], max_new_tokens=NEW_TOKENS), lm,
                                  LONG[1])


def test_a_failure_after_the_first_token_is_an_error_event_counted_as_a_failure(
    server, lm, monkeypatch
):
    """The engine fails at the third decoder step: the tokens sent stay sent, then TGI's error
    event, which InferenceClient raises; the metrics count a failure, not a success."""
    next_step, steps = lm.graphs.next_step, []

    def failing_step(*args):
        steps.append(1)
        if len(steps) == 3:
            raise RuntimeError("the decoder broke")
        return next_step(*args)

    monkeypatch.setattr(lm.graphs, "next_step", failing_step)
    labels = {"model": "t5"}
    successes = metric_value(server, "onnx_engine_request_success_total", labels)
    failures = metric_value(server, "onnx_engine_request_failure_total",
                            {**labels, "error_type": "backend"})
    with httpx.stream("POST", f"{server}/models/t5/generate_stream", timeout=TIMEOUT_S,
                      json={"inputs": LONG[0], "parameters": {"max_new_tokens": 20}}) as response:
        events = [json.loads(line[len("data:"):]) for line in response.iter_lines() if line]
    assert [event["token"]["id"] for event in events[:-1]] == lm.generate(
        LONG[0], max_new_tokens=3)[0].token_ids.tolist()
    assert events[-1]["error_type"] == "backend" and "the decoder broke" in events[-1]["error"]
    steps.clear()
    with pytest.raises(Exception, match="the decoder broke"):
        list(_client(server).text_generation(LONG[0], stream=True, max_new_tokens=20))
    assert metric_value(server, "onnx_engine_request_success_total", labels) == successes
    assert metric_value(server, "onnx_engine_request_failure_total",
                        {**labels, "error_type": "backend"}) == failures + 2


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/models/t5/generate_stream", {"inputs": ["a", "b"]}, 422, "one text"),
    ("/models/t5/generate_stream", {"inputs": "x", "parameters": {"num_beams": 0}}, 422,
     "num_beams"),
    ("/models/t5/generate_stream", {"inputs": "x", "parameters": {"max_new_tokens": 10**6}}, 422,
     "at most"),
    ("/models/t5/generate_stream", {"inputs": "x", "parameters": {"top_p": 0.9}}, 400,
     "model_kwargs"),
    ("/models/t5", {"inputs": "x", "stream": "yes"}, 422, "true or false"),
    ("/models/t5", {"inputs": "x", "stream": True, "parameters": {"details": 1}}, 422, "details"),
    ("/models/clf/generate_stream", {"inputs": "x"}, 404, "generate_stream"),
    ("/models/clf", {"inputs": "x", "stream": True}, 404, "generate_stream"),
    ("/models/nope/generate_stream", {"inputs": "x"}, 404, "clf, t5"),
])
def test_errors_before_the_stream_are_plain_http_errors(server, path, body, status, fragment):
    response = httpx.post(f"{server}{path}", json=body, timeout=TIMEOUT_S)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert fragment in response.json()["error"]


def test_inference_client_raises_the_servers_refusal(server):
    with pytest.raises(HubValidationError, match="at most"):
        list(_client(server).text_generation("x", max_new_tokens=10**6, stream=True))


def test_overload_and_timeout_before_the_first_token_are_plain_http_errors(
    serve_models, monkeypatch
):
    """With the worker held: a stream past --request-timeout-s before its first token is 504,
    and one over --max-concurrent-requests is 429, both JSON, as for whole answers."""
    gate = Gate(monkeypatch, serve_models["t5"].graphs)
    config = ServeConfig(max_concurrent_requests=2, request_timeout_s=1.0)
    with running_server(config, serve_models) as (url, _):
        blocker = _hold_the_worker(url, gate)
        body = {"inputs": LONG[0], "parameters": {"max_new_tokens": 4}}
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.post, f"{url}/models/t5/generate_stream", json=body,
                                  timeout=TIMEOUT_S)
            wait_until(lambda: metric_value(url, "onnx_engine_queue_size", {"model": "t5"}) == 1,
                       "the stream queued")
            refused = httpx.post(f"{url}/models/t5/generate_stream", json=body, timeout=TIMEOUT_S)
            timed_out = waiting.result(TIMEOUT_S)
        gate.released.set()
        blocker.join(TIMEOUT_S)
        assert (refused.status_code, refused.json()["error_type"]) == (429, "overloaded")
        assert (timed_out.status_code, timed_out.json()["error_type"]) == (504, "timeout")
        assert timed_out.headers["content-type"] == "application/json"
