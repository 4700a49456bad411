"""`onnx-engine serve` lifecycle: readiness while loading, SIGTERM drain, TLS and CORS."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
import trustme
from serve_support import metric_samples, running_server, wait_ready

import engine
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.server import Listener

SOURCES = ["summarize: the cat sat on the mat", "hello there", "translate: good morning", "a b c"]
SLOW = {"max_new_tokens": 160, "num_beams": 6, "early_stopping": "never"}


def test_ready_only_after_models_load(distilbert):
    release = threading.Event()

    def load():
        assert release.wait(timeout=30), "the test never released the loader"
        return {"clf": engine.load(distilbert.artifact)}

    with running_server(ServeConfig(), load) as (url, _):
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        not_ready = httpx.get(f"{url}/v2/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["error_type"] == "unavailable"
        early = httpx.post(f"{url}/models/clf", json={"inputs": "x"})
        assert early.status_code == 503 and early.headers["retry-after"] == "1"
        release.set()
        wait_ready(url, timeout_s=30)
        assert httpx.post(f"{url}/models/clf", json={"inputs": "x"}).status_code == 200


def test_sigterm_drains_accepted_requests(distilbert, t5_v1_1):
    """SIGTERM while requests run: every accepted one is answered, then the process exits 0."""
    want = [s.text for s in engine.load(t5_v1_1.artifact).generate(SOURCES, **SLOW)]
    process = subprocess.Popen(
        [sys.executable, "-m", "onnx_engine", "serve", f"clf={distilbert.artifact}",
         f"t5={t5_v1_1.artifact}", "--port", "0", "--max-batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), process.stderr.read()
        # The line is printed once the models are loaded: no request meets a 503 after it.
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        answers: dict[int, httpx.Response] = {}

        def ask(index: int) -> None:
            answers[index] = httpx.post(f"{url}/models/t5", timeout=120,
                                        json={"inputs": SOURCES[index], "parameters": SLOW})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(SOURCES))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30  # bounded: all requests admitted, even on a busy CPU
        while not _all_admitted_some_running(url, len(SOURCES)):
            if time.monotonic() > deadline:
                pytest.fail("the requests were never all admitted with one still running")
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=120)
        assert process.wait(timeout=60) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert [answers[i].status_code for i in range(len(SOURCES))] == [200] * len(SOURCES)
    assert [answers[i].json()[0]["generated_text"] for i in range(len(SOURCES))] == want


def _all_admitted_some_running(url: str, requests: int) -> bool:
    """All ``requests`` admitted (in flight or answered, read in one scrape) and one still runs.

    Not all four in flight at once: with one text per batch the first can be done
    before a loaded CPU has admitted the fourth.
    """
    samples = metric_samples(url)
    in_flight = samples.get(("onnx_engine_requests_in_flight", frozenset()), 0.0)
    answered = samples.get(("onnx_engine_request_success_total", frozenset({("model", "t5")})), 0.0)
    return in_flight >= 1 and in_flight + answered == requests


def test_tls_and_cors(tmp_path, distilbert):
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    authority.cert_pem.write_to_path(str(cafile))
    listener = Listener(port=0, ssl_certfile=certfile, ssl_keyfile=keyfile)
    config = ServeConfig(cors_origins=("https://app.example",))
    with running_server(config, {"clf": engine.load(distilbert.artifact)}, listener) as (url, _):
        assert url.startswith("https://")
        verify = ssl.create_default_context(cafile=str(cafile))
        answer = httpx.post(f"{url}/models/clf", json={"inputs": "x"}, verify=verify,
                            headers={"Origin": "https://app.example"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        preflight = httpx.options(f"{url}/models/clf", verify=verify, headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers
        with pytest.raises(httpx.ConnectError):  # an unknown authority is refused
            httpx.get(f"{url}/v2/health/live")
