"""The server's own cost per request, without sockets, HTTP parsing or a client.

``serve_bench.py --engine-only`` measures the overhead a client sees over HTTP, which on a small
shared machine is mostly the client's own CPU (httpx) and the scheduling of two processes. This
calls the ASGI app directly on uvloop (lifespan run, batcher started), alternating in blocks of 100
with the same in-process engine call, and prints the p50 of both and their difference: what the
request path (routing, parsing, tokenizing, queueing, the worker-thread hop, answering) adds.

    python benchmarks/asgi_overhead.py ARTIFACT [--requests 3000]

Run it from two checkouts (PYTHONPATH=checkout) back to back for a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import uvloop

import engine
from onnx_engine.serving.app import build_app
from onnx_engine.serving.config import ServeConfig

TEXTS = ["The delivery came two days late, but support answered quickly.", "I love it",
         "Terrible product, it broke in a day."]
BLOCK = 100


async def _request(app: Any, path: str, body: bytes) -> None:
    """One POST through the app, answered in full (a 200, or AssertionError)."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    answered = asyncio.Event()
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 8000), "state": {},
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    await app(scope, receive, send)
    assert status == [200], status


async def measure(artifact: str, requests: int) -> dict[str, float]:
    model = engine.load(artifact)
    app = build_app(ServeConfig(), {"m": model})
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                        "state": {}}, inbox.get, outbox.put))
    await outbox.get()
    local, served = [], []
    for _ in range(max(1, requests // BLOCK)):
        for index in range(BLOCK):
            started = time.perf_counter()
            model(TEXTS[index % len(TEXTS)], top_k=None)
            local.append(time.perf_counter() - started)
        for index in range(BLOCK):
            body = json.dumps({"inputs": TEXTS[index % len(TEXTS)]}).encode()
            started = time.perf_counter()
            await _request(app, "/models/m", body)
            served.append(time.perf_counter() - started)
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    in_process = statistics.median(local[BLOCK:]) * 1000  # the first block warms up
    request = statistics.median(served[BLOCK:]) * 1000
    return {"requests": len(served), "in_process_p50_ms": round(in_process, 3),
            "asgi_request_p50_ms": round(request, 3),
            "overhead_p50_ms": round(request - in_process, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", help="a text-classification artifact")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(measure(args.artifact, args.requests))))


if __name__ == "__main__":
    main()
