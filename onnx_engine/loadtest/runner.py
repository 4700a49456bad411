"""Closed-loop load: N clients, each sending its next request as soon as the last is answered.

Every level is bounded twice, by ``duration_s`` and by ``max_requests``, and stops by itself.
Each 200 answer is checked against the in-process reference for its text: a wrong one is a
mixed-up response; a request without any HTTP answer is lost. The mean batch size of the level
comes from the server's ``/metrics`` (sum and count of the batch-size histogram, before/after).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

from onnx_engine.loadtest.protocols import Protocol
from onnx_engine.loadtest.reference import Reference

BATCH_SIZE_METRIC = "onnx_engine_batch_size"
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


@dataclass(frozen=True)
class LevelResult:
    """What one concurrency level measured; latencies in ms, over answers with status 200."""

    concurrency: int
    duration_s: float
    requests: int
    throughput_rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int]
    mixed_up: int
    lost: int
    rejected_p50_ms: float | None  # 429 answers: how fast the excess is turned away
    rejected_p99_ms: float | None
    mean_batch_size: float | None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def run_level(
    url: str, protocol: Protocol, texts: list[str], reference: Reference, concurrency: int,
    duration_s: float, max_requests: int, headers: dict[str, str], tally: Tally | None = None,
    timeout_s: float = 60.0,
) -> Tally:
    """Run ``concurrency`` closed-loop clients for ``duration_s`` (or ``max_requests``).

    Adds to ``tally`` when given: a level can be run in several short rounds, interleaved with
    other servers' rounds, so every server sees the same drift of a shared machine's load.
    """
    tally = tally if tally is not None else Tally(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # Without TCP_NODELAY the body, written after the headers, waits for the server's delayed
    # ACK (~40 ms on Linux): a client artifact that would swamp every server-side figure.
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=NO_DELAY)
    async with httpx.AsyncClient(base_url=url, headers=headers, transport=transport,
                                 timeout=timeout_s) as client:
        before = await _batch_totals(client, protocol.model)
        started = time.perf_counter()
        deadline = started + duration_s
        sent = iter(range(max_requests))
        await asyncio.gather(*(
            _client_loop(client, protocol, texts, reference, worker, deadline, sent, tally)
            for worker in range(concurrency)
        ))
        tally.elapsed += time.perf_counter() - started
        after = await _batch_totals(client, protocol.model)
    if before is not None and after is not None:
        tally.batch_totals[0] += after[0] - before[0]
        tally.batch_totals[1] += after[1] - before[1]
    else:
        tally.batch_totals = None
    return tally


@dataclass
class Tally:
    """What the clients of one level saw, over one or more rounds."""

    concurrency: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rejected: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    mixed_up: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)
    batch_totals: list[float] | None = field(default_factory=lambda: [0.0, 0.0])

    def result(self) -> LevelResult:
        ok = np.array(self.latencies) * 1000
        rejected = np.array(self.rejected) * 1000
        requests = sum(self.statuses.values()) + self.lost
        mean_batch = None
        if self.batch_totals is not None and self.batch_totals[1]:
            mean_batch = round(self.batch_totals[0] / self.batch_totals[1], 2)
        return LevelResult(
            concurrency=self.concurrency, duration_s=round(self.elapsed, 3), requests=requests,
            throughput_rps=round(len(ok) / self.elapsed, 2),
            p50_ms=_percentile(ok, 50), p90_ms=_percentile(ok, 90), p99_ms=_percentile(ok, 99),
            statuses={str(k): v for k, v in sorted(self.statuses.items())},
            mixed_up=self.mixed_up, lost=self.lost,
            rejected_p50_ms=_percentile(rejected, 50), rejected_p99_ms=_percentile(rejected, 99),
            mean_batch_size=mean_batch, errors=self.errors[:5],
        )


async def _client_loop(
    client: httpx.AsyncClient, protocol: Protocol, texts: list[str], reference: Reference,
    worker: int, deadline: float, sent: Any, tally: Tally,
) -> None:
    position = worker  # clients start at different texts, so concurrent requests differ
    while time.perf_counter() < deadline and next(sent, None) is not None:
        text = texts[position % len(texts)]
        position += 1
        started = time.perf_counter()
        try:
            response = await client.post(protocol.path, json=protocol.body(text))
        except httpx.HTTPError as error:
            tally.lost += 1
            tally.errors.append(f"{type(error).__name__}: {error}")
            continue
        elapsed = time.perf_counter() - started
        tally.statuses[response.status_code] += 1
        if response.status_code == 429:
            tally.rejected.append(elapsed)
            await asyncio.sleep(0.001)  # a real client backs off; this keeps the loop closed
            continue
        if response.status_code != 200:
            tally.errors.append(f"{response.status_code}: {response.text[:200]}")
            continue
        tally.latencies.append(elapsed)
        try:
            correct = reference.matches(text, protocol.answer(response.json()))
        except (KeyError, IndexError, TypeError, ValueError):
            correct = False
        if not correct:
            tally.mixed_up += 1
            tally.errors.append(f"wrong answer for {text[:40]!r}: {response.text[:200]}")


async def paired_overhead(
    urls: dict[str, str], protocol: Protocol, call: Callable[[str], Any], texts: list[str],
    duration_s: float, max_pairs: int, headers: dict[str, str],
) -> dict[str, dict[str, float]]:
    """p50 of one in-process call and of one request for the same text to each server (label
    -> URL), alternated, per server.

    Alternating call by call puts all of them under the same machine load (on a shared machine
    the load drifts between separate runs), so each difference is that server's overhead.
    """
    local: list[float] = []
    remote: dict[str, list[float]] = {label: [] for label in urls}
    transport = httpx.AsyncHTTPTransport(socket_options=NO_DELAY)
    async with contextlib.AsyncExitStack() as stack:
        clients = {label: await stack.enter_async_context(httpx.AsyncClient(
            base_url=url, headers=headers, transport=transport, timeout=60))
            for label, url in urls.items()}
        deadline = time.perf_counter() + duration_s
        for index in range(max_pairs):
            if time.perf_counter() > deadline:
                break
            text = texts[index % len(texts)]
            started = time.perf_counter()
            call(text)
            local.append(time.perf_counter() - started)
            for label, client in clients.items():
                started = time.perf_counter()
                response = await client.post(protocol.path, json=protocol.body(text))
                remote[label].append(time.perf_counter() - started)
                response.raise_for_status()
    in_process = _percentile(np.array(local[1:]) * 1000, 50)  # the first round warms up
    found = {}
    for label, times in remote.items():
        served = _percentile(np.array(times[1:]) * 1000, 50)
        found[label] = {"pairs": len(local) - 1, "in_process_p50_ms": in_process,
                        "server_p50_ms": served, "overhead_p50_ms": round(served - in_process, 3)}
    return found


async def _batch_totals(client: httpx.AsyncClient, model: str) -> tuple[float, float] | None:
    """Sum and count of the server's batch-size histogram for ``model`` (None: no metrics)."""
    try:
        response = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    if response.status_code != 200 or BATCH_SIZE_METRIC not in response.text:
        return None
    totals = {"sum": 0.0, "count": 0.0}  # before the model's first batch it has no series
    for line in response.text.splitlines():
        for suffix in ("sum", "count"):
            if line.startswith(f'{BATCH_SIZE_METRIC}_{suffix}{{model="{model}"}} '):
                totals[suffix] = float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None
