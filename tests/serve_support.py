"""Running a real ``onnx-engine serve`` app on 127.0.0.1 for tests (never used by the server)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from onnx_engine.serving.app import Alongside, build_app
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.server import Listener, bind, make_server


@contextlib.contextmanager
def running_server(
    config: ServeConfig, models: Any, listener: Listener = Listener(port=0),
    alongside: Alongside | None = None,
) -> Iterator[tuple[str, Any]]:
    """Serve ``build_app(config, models, alongside)`` from a thread on an ephemeral port; yields
    the base URL and the app, and stops the server (bounded wait) when the block ends."""
    app = build_app(config, models, alongside)
    sock = bind(listener)
    server = make_server(app, listener)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"{listener.scheme}://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass(frozen=True)
class ServeProcess:
    """A running ``onnx-engine serve`` process, its HTTP base URL, and its gRPC address
    (``host:port``, as tritonclient.grpc takes it; None without ``--grpc-port``)."""

    process: subprocess.Popen
    url: str
    grpc: str | None


def serve_process(*args: str) -> ServeProcess:
    """``onnx-engine serve ARGS --port 0``, once it printed that it is ready (models loaded)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "onnx_engine", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline().strip()
    if " ready" not in line or " on http" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r} {process.stderr.read()}")
    grpc = re.search(r"\(gRPC on (\S+)\)", line)
    return ServeProcess(process, line.rsplit(" ", 1)[-1], grpc.group(1) if grpc else None)


def stop_process(process: subprocess.Popen) -> None:
    """Kill ``process`` unless it has ended (bounded wait)."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def wait_ready(url: str, timeout_s: float = 60, **client_args: Any) -> None:
    """Poll ``/v2/health/ready`` until 200 (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2, **client_args).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready within {timeout_s} s")


def metric_value(url: str, name: str, labels: Mapping[str, str] | None = None,
                 **client_args: Any) -> float:
    """The value of one sample of ``/metrics`` (0.0 when it is absent)."""
    return metric_samples(url, **client_args).get((name, frozenset((labels or {}).items())), 0.0)


def metric_samples(url: str, **client_args: Any) -> dict[tuple[str, frozenset], float]:
    """Every sample of one ``/metrics`` scrape, keyed by name and labels: figures read together."""
    samples = {}
    for line in httpx.get(f"{url}/metrics", timeout=5, **client_args).text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        sample, _, value = line.rpartition(" ")
        base, _, rest = sample.partition("{")
        found = dict(pair.split("=", 1) for pair in rest.rstrip("}").split(",") if pair)
        samples[base, frozenset((k, v.strip('"')) for k, v in found.items())] = float(value)
    return samples


def held_connection(url: str, extra_headers: str = "") -> socket.socket:
    """A request whose body never arrives: it holds a connection (never an admission slot) until
    closed, or answered 408 after the server's ``client_timeout_s``."""
    host, port = url.rsplit("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"POST /models/clf HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{extra_headers}Content-Length: 100\r\n\r\n{{\"inputs\":".encode()
    )
    return sock


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.02)


def raw_request(path: str, body: dict, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(data)}\r\n\r\n").encode() + data


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response read off ``sock`` (Content-Length framed, as the server sends them)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (reads what is left; bounded by the socket timeout)."""
    try:
        while sock.recv(65536):
            pass
    except (TimeoutError, ConnectionResetError):
        return False
    return True
