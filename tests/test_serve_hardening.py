"""`onnx-engine serve` against hostile or unlucky clients, over real sockets on 127.0.0.1.

Slow bodies and partial headers (client timeout), keep-alive after a 500, the queue gauge after
drops, cancellation of abandoned T5 beam jobs (counted in decoder steps, never in seconds), the
SIGTERM drain deadline, and the CLI's one-line start-up errors. Every wait is bounded in count
and time; no assertion is on timing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from serve_support import (
    closed_by_server,
    held_connection,
    metric_value,
    port_of,
    raw_request,
    read_response,
    running_server,
    wait_until,
)

import engine
from onnx_engine.serving.config import ServeConfig

QUICK = 1.0  # --client-timeout-s of the test servers: short, so the tests stay fast
LONG_BEAMS = {"max_new_tokens": 400, "num_beams": 16, "early_stopping": "never"}


class GatedClassifier:
    """The tiny classifier whose engine calls wait at ``gate`` and fail on a text with "boom"."""

    def __init__(self, model: Any, gate: threading.Event | None = None) -> None:
        self._model = model
        self.gate = gate
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def logits_encoded(self, rows, batch_size):
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(timeout=30), "the test never opened the gate"
        if any("boom" in row.text for row in rows):
            raise RuntimeError("kernel exploded")
        return self._model.logits_encoded(rows, batch_size=batch_size)


class StepCounter:
    """Counts the with-past decoder steps of a Seq2SeqLM by the rows they ran; ``pause_s`` per
    step makes a long job last long enough for a client to leave during it."""

    def __init__(self, lm: Any, pause_s: float = 0.0) -> None:
        self.rows: list[int] = []
        self._next_step = lm.graphs.next_step
        self._pause_s = pause_s
        lm.graphs.next_step = self

    def __call__(self, ids, *args, **kwargs):
        self.rows.append(int(ids.shape[0]))
        if self._pause_s:
            time.sleep(self._pause_s)
        return self._next_step(ids, *args, **kwargs)

    def steps_with(self, rows: int) -> int:
        return sum(1 for count in self.rows if count == rows)


@pytest.fixture(scope="module")
def clf(distilbert):
    return engine.load(distilbert.artifact)


@pytest.fixture(params=["auto", "h11"])
def http_impl(request, monkeypatch):
    """uvicorn's protocol as installed here (httptools), and h11, which a plain `pip install
    uvicorn` (the image's install) runs: the client deadlines must hold on both."""
    if request.param == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        from onnx_engine.serving import server

        monkeypatch.setattr(server, "AutoHTTPProtocol", H11Protocol)
    return request.param


# --- slow clients (item 6) ---

def test_slow_bodies_take_no_slot_and_get_408(clf, http_impl):
    """Four clients sending 10 of 100 body bytes: valid requests still get 200, not 429, and
    each slow client is answered 408 with its connection closed."""
    config = ServeConfig(max_concurrent_requests=4, client_timeout_s=QUICK)
    with running_server(config, {"clf": clf}) as (url, _):
        holders = [held_connection(url) for _ in range(4)]
        try:
            for _ in range(3):
                answer = httpx.post(f"{url}/models/clf", json={"inputs": "x"}, timeout=10)
                assert answer.status_code == 200, answer.text
            assert metric_value(url, "onnx_engine_requests_in_flight") == 0
            for sock in holders:
                status, headers, body = read_response(sock)
                assert status == 408 and headers["connection"] == "close"
                assert json.loads(body)["error_type"] == "timeout"
                assert "--client-timeout-s" in json.loads(body)["error"]
                assert closed_by_server(sock)
        finally:
            for sock in holders:
                sock.close()


def test_partial_headers_and_idle_connections_are_closed(clf, http_impl):
    config = ServeConfig(client_timeout_s=QUICK)
    with running_server(config, {"clf": clf}) as (url, _):
        silent = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
        partial = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
        partial.sendall(b"POST /models/clf HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        # After a full answer on a keep-alive connection, half of the next request's headers.
        kept = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
        kept.sendall(raw_request("/models/clf", {"inputs": "x"}))
        assert read_response(kept)[0] == 200
        kept.sendall(b"POST /models/clf HTTP/1.1\r\nHo")
        try:
            assert all(closed_by_server(sock) for sock in (silent, partial, kept))
        finally:
            for sock in (silent, partial, kept):
                sock.close()


def test_429_counts_only_requests_whose_body_arrived(clf):
    """With 2 slots, 2 admitted requests (waiting for the model) make a third one 429 at once."""
    gate = threading.Event()
    config = ServeConfig(max_concurrent_requests=2, max_batch_size=1, client_timeout_s=QUICK)
    with running_server(config, {"clf": GatedClassifier(clf, gate)}) as (url, _):
        waiting = [socket.create_connection(("127.0.0.1", port_of(url)), timeout=30)
                   for _ in range(2)]
        try:
            for sock in waiting:
                sock.sendall(raw_request("/models/clf", {"inputs": "x"}))
            wait_until(lambda: metric_value(url, "onnx_engine_requests_in_flight") == 2,
                   "admitting both requests")
            refused = httpx.post(f"{url}/models/clf", json={"inputs": "x"}, timeout=10)
            assert refused.status_code == 429 and refused.json()["error_type"] == "overloaded"
            assert int(refused.headers["retry-after"]) >= 1
            gate.set()
            assert [read_response(sock)[0] for sock in waiting] == [200, 200]
        finally:
            gate.set()
            for sock in waiting:
                sock.close()


# --- errors keep the connection (item 8) ---

def test_keep_alive_connection_is_usable_after_500s(clf, http_impl):
    """A 500 from the model (worker thread), one raised on the event loop, and a 404 answered
    before its body was read: the next request on the same connection is answered."""
    with running_server(ServeConfig(), {"clf": GatedClassifier(clf)}) as (url, app):
        handler = app.state.serving.models["clf"].handler
        encode = handler.encode_hf

        def encode_or_fail(job, results, route):
            if job.texts == ["fail while encoding"]:
                raise ValueError("encoder bug")
            return encode(job, results, route)

        handler.encode_hf = encode_or_fail
        want = clf.labels[int(clf.logits(["fine"]).argmax())]
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as sock:
            for path, bad, want_status in (("/models/clf", "boom", 500),
                                           ("/models/clf", "fail while encoding", 500),
                                           ("/models/nope", "x", 404),  # answered before its body
                                           ("/models/clf", "boom", 500)):
                sock.sendall(raw_request(path, {"inputs": bad}))
                status, headers, body = read_response(sock)
                assert status == want_status, body
                assert headers.get("connection") != "close"
                sock.sendall(raw_request("/models/clf", {"inputs": "fine"}))
                status, _, body = read_response(sock)
                best = json.loads(body)[0]  # the Inference API answers [[{label, score}, ...]]
                answer = best[0] if isinstance(best, list) else best
                assert status == 200 and answer["label"] == want


# --- the queue gauge (item 9) ---

@pytest.mark.parametrize("leave", ["disconnect", "timeout"])
def test_queue_gauge_drops_texts_whose_request_left(clf, leave):
    gate = threading.Event()
    config = ServeConfig(max_batch_size=1, client_timeout_s=5,
                         request_timeout_s=1.0 if leave == "timeout" else None)
    model = GatedClassifier(clf, gate)
    with running_server(config, {"clf": model}) as (url, _):
        running = socket.create_connection(("127.0.0.1", port_of(url)), timeout=30)
        queued = [socket.create_connection(("127.0.0.1", port_of(url)), timeout=30)
                  for _ in range(3)]
        try:
            running.sendall(raw_request("/models/clf", {"inputs": "first"}))
            wait_until(lambda: model.calls == 1, "the first batch starting")
            for sock in queued:
                sock.sendall(raw_request("/models/clf", {"inputs": "queued"}))
            gauge = lambda: metric_value(url, "onnx_engine_queue_size", {"model": "clf"})  # noqa: E731
            wait_until(lambda: gauge() == 3, "three texts queued")
            if leave == "disconnect":
                for sock in queued:
                    sock.close()
            wait_until(lambda: gauge() == 0, "the gauge dropping the abandoned texts")
            assert model.calls == 1  # the worker is still on the first batch
            gate.set()
            assert read_response(running)[0] == (200 if leave == "disconnect" else 504)
            if leave == "timeout":
                assert [read_response(sock)[0] for sock in queued] == [504] * 3
            assert model.calls == 1 and gauge() == 0  # the dropped texts never ran
        finally:
            gate.set()
            for sock in [running, *queued]:
                sock.close()


# --- cancellation (item 5) ---

@pytest.mark.parametrize("beams", [1, 16])
def test_generate_stops_cancelled_inputs_between_steps(t5_v1_1, beams):
    lm = engine.load(t5_v1_1.artifact)
    counter = StepCounter(lm)
    sources = ["hello there", "translate: good morning"]
    settings = {"max_new_tokens": 400, "num_beams": beams, "early_stopping": "never"}
    full = lm.generate(sources, **settings)
    full_steps = len(counter.rows)
    assert full_steps > 100  # one long input is enough to keep the batch decoding

    polls = []

    def after_three_steps() -> list[bool]:
        polls.append(None)
        return [len(counter.rows) - full_steps >= 3] * 2

    cancelled = lm.generate(sources, cancelled=after_three_steps, **settings)
    assert len(counter.rows) - full_steps == 3
    assert [sequence.cancelled for sequence in cancelled] == [True, True]
    assert all(s.text == "" and len(s.token_ids) == 0 for s in cancelled)

    # Only the first input cancelled: the second's result is the one it gets alone.
    mixed = lm.generate(sources, cancelled=lambda: [True, False], **settings)
    assert mixed[0].cancelled and not mixed[1].cancelled
    assert mixed[1].token_ids.tolist() == full[1].token_ids.tolist()
    assert mixed[1].text == full[1].text
    np.testing.assert_allclose(mixed[1].score or 0.0, full[1].score or 0.0, rtol=1e-6)

    with pytest.raises(engine.InputError, match="one per text"):
        lm.generate(sources, cancelled=lambda: [True], **settings)


def test_client_leaving_a_long_beam_job_frees_the_model(t5_v1_1):
    """A client that disconnects during a 16-beam job: its rows stop within a few steps, and the
    next request runs right after them."""
    lm = engine.load(t5_v1_1.artifact)
    counter = StepCounter(lm, pause_s=0.01)  # 400 steps would take 4 s or more
    with running_server(ServeConfig(), {"t5": lm}) as (url, _):
        sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=30)
        sock.sendall(raw_request("/models/t5", {"inputs": "hello there", "parameters": LONG_BEAMS}))
        wait_until(lambda: counter.steps_with(16) >= 3, "the beam job starting")
        sock.close()
        answer = httpx.post(f"{url}/models/t5", timeout=60,
                            json={"inputs": "hi", "parameters": {"max_new_tokens": 3}})
        assert answer.status_code == 200
        abandoned = counter.steps_with(16)
        assert 3 <= abandoned < 100, f"the abandoned job ran {abandoned} of 399 steps"
        assert counter.rows[-1] == 1  # the next request ran after the abandoned job stopped
        assert metric_value(url, "onnx_engine_request_failure_total",
                            {"model": "t5", "error_type": "cancelled"}) == 1
