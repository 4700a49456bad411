"""`onnx-engine serve` as a real process: the SIGTERM drain deadline with partial bodies and
accepted work, and the CLI's one-line start-up errors. Every wait is bounded in count and time."""

from __future__ import annotations

import signal
import socket
import subprocess

import httpx
import pytest
from serve_support import (
    held_connection,
    metric_value,
    port_of,
    raw_request,
    read_response,
    serve_process,
    stop_process,
    wait_until,
)

# --- SIGTERM drain deadline (item 7) and start-up (item 16), in a real process ---

def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    served = serve_process(*args)
    assert served.url.startswith("http://127.0.0.1:"), served.url
    # Printed once the models are loaded: the first request is served, never 503.
    assert httpx.get(f"{served.url}/v2/health/ready", timeout=10).status_code == 200
    return served.process, served.url


def test_sigterm_exits_by_the_drain_deadline_despite_a_partial_body(distilbert):
    process, url = _serve(f"clf={distilbert.artifact}", "--client-timeout-s", "60",
                          "--drain-timeout-s", "1")
    holder = held_connection(url)
    try:
        assert httpx.post(f"{url}/models/clf", json={"inputs": "x"}, timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)
        # The partial body was never accepted work: the drain ends at its deadline, exit 0.
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        holder.close()
        stop_process(process)


def test_drain_deadline_cancels_accepted_work_and_says_so(t5_v1_1):
    process, url = _serve(f"t5={t5_v1_1.artifact}", "--drain-timeout-s", "1")
    slow = {"max_new_tokens": 500, "num_beams": 64, "early_stopping": "never"}
    sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=30)
    try:
        sock.sendall(raw_request("/models/t5", {"inputs": "hello there", "parameters": slow}))
        wait_until(lambda: metric_value(url, "onnx_engine_requests_in_flight") == 1, "admission")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        err = process.stderr.read()
        assert code == 1, err
        assert "error: the drain deadline (--drain-timeout-s 1.0) passed with 1 accepted" in err
        assert "Traceback" not in err
        status, headers, body = read_response(sock)  # told to retry elsewhere, not left hanging
        assert status == 503 and headers["retry-after"] == "1", body
    finally:
        sock.close()
        stop_process(process)


def _one_error_line(capsys, argv: list[str], *fragments: str) -> None:
    from onnx_engine.cli import main

    assert main(["serve", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert "ready on" not in captured.out and "loading" not in captured.err


def test_serve_start_up_errors_are_one_line(distilbert, tmp_path, capsys):
    model = f"clf={distilbert.artifact}"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        _one_error_line(capsys, [model, "--port", str(taken.getsockname()[1])],
                        "--port", "already in use")
    finally:
        taken.close()
    _one_error_line(capsys, [model, "--port", "99999"], "--port", "65535", "99999")
    _one_error_line(capsys, [model, "--ssl-certfile", str(tmp_path / "no.pem"),
                             "--ssl-keyfile", str(tmp_path / "no.key")],
                    "--ssl-certfile", "no such file")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    _one_error_line(capsys, [model, "--ssl-certfile", str(tmp_path / "junk.pem"),
                             "--ssl-keyfile", str(tmp_path / "junk.pem")],
                    "--ssl-certfile", "--ssl-keyfile", "cannot load")
    _one_error_line(capsys, [model, "--drain-timeout-s", "0"], "--drain-timeout-s")
    _one_error_line(capsys, [model, "--client-timeout-s", "0"], "--client-timeout-s", "positive")
    # Issue 22 #1 with a raised bound: one T5 text of 100,000 tokens took the memory past 6 GB.
    _one_error_line(capsys, [model, "--max-input-tokens", "100000"],
                    "--max-input-tokens must be at most --max-batch-tokens 8192, got 100000")
    _one_error_line(capsys, [model, "--max-batch-size", "0"], "--max-batch-size must be")


def test_unknown_host_is_one_line(distilbert, capsys, monkeypatch):
    """An unresolvable --host (the resolver's failure is simulated: tests make no DNS queries)."""
    from onnx_engine.serving import server

    class Unresolvable(socket.socket):
        def bind(self, address):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(server.socket, "socket", Unresolvable)
    _one_error_line(capsys, [f"clf={distilbert.artifact}", "--host", "no-such-host"],
                    "--host no-such-host", "unknown host")


def test_serve_help_shows_defaults(capsys):
    from onnx_engine.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]  # past the usage
    for flag, default in (("--client-timeout-s", "30.0"), ("--drain-timeout-s", "30.0"),
                          ("--max-batch-size", "32"), ("--port", "8000"),
                          ("--host", "127.0.0.1")):
        after = text.split(f"{flag} {flag.lstrip('-').replace('-', '_').upper()}", 1)[1]
        assert f"(default: {default})" in after.split(" --", 1)[0], flag
