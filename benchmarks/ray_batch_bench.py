"""Inside a replica: the project's batcher against Ray Serve's ``@serve.batch``, same model.

Both batch single texts from closed-loop coroutines on one event loop into one engine call in a
worker thread, as a replica does; only the batching differs. ``@serve.batch`` gets the same
token budget through ``batch_size_fn`` (a batch's size is the larger of its text count and its
padded tokens scaled to ``max_batch_size``), ours its own (length-sorted windows, oldest first).
No HTTP, no Ray cluster: the figures are the batchers' own. Writes
``benchmarks/results/serve-ray-batching-<name>.{json,md}``.

    python -m benchmarks.ray_batch_bench [--model distilbert-base | ARTIFACT] [--clients 32]
        [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serve_bench import RESULTS
from engine.tokenization import EncodedRow
from onnx_engine.bench.machine import load_average
from onnx_engine.bench.models import resolve_target
from onnx_engine.commands.loadtest import DEFAULT_TEXTS, run_meta
from onnx_engine.serving.batcher import Batcher, WorkItem
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.metrics import ServerMetrics
from onnx_engine.serving.tasks import handler_for

Submit = Callable[[EncodedRow], Awaitable[Any]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="distilbert-base")
    parser.add_argument("--name", default=None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per batcher per round")
    parser.add_argument("--rounds", type=int, default=3, help="the batchers take turns")
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    args = parser.parse_args()
    import engine

    target = resolve_target(args.model, args.cache_dir, log=sys.stderr)
    name = args.name or target.name
    config = ServeConfig()
    handler = handler_for(engine.load(target.artifact), config)
    texts = [line for line in DEFAULT_TEXTS.read_text().splitlines() if line.strip()]
    load_before = load_average()
    rows = dict(zip(texts, handler.model.tokenizer.encode_rows(texts)))  # encoded once, as served
    latencies: dict[str, list[float]] = {"onnx-engine batcher": [], "@serve.batch": []}
    batches: dict[str, list[int]] = {label: [] for label in latencies}
    elapsed = dict.fromkeys(latencies, 0.0)
    for _ in range(args.rounds):
        for label in latencies:
            runner = _ours if label.startswith("onnx") else _serve_batch
            took = asyncio.run(runner(handler, config, texts, rows, args.clients,
                                      args.duration, latencies[label], batches[label]))
            elapsed[label] += took
    results = {
        label: {"requests": len(values), "throughput_rps": round(len(values) / elapsed[label], 1),
                "p50_ms": round(float(np.percentile(values, 50)) * 1000, 2),
                "p99_ms": round(float(np.percentile(values, 99)) * 1000, 2),
                "mean_batch_size": round(float(np.mean(batches[label])), 2)}
        for label, values in latencies.items()
    }
    meta = run_meta(" ".join(shlex.quote(a) for a in
                             ["python -m benchmarks.ray_batch_bench", *sys.argv[1:]]), load_before)
    stem = RESULTS / f"serve-ray-batching-{name}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results},
                                                    indent=2) + "\n", encoding="utf-8")
    lines = [f"Batching inside one replica, `{name}`, {args.clients} closed-loop clients of one "
             f"text, {args.rounds} x {args.duration} s each, batchers taking turns. "
             f"Machine: {meta['cpu']}, load average before/after {meta['load_before']} / "
             f"{meta['load_after']}. Command: `{meta['command']}`", "",
             "| batcher | req/s | p50 ms | p99 ms | mean batch |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | {r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['mean_batch_size']} |" for label, r in results.items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


async def _closed_loop(submit: Submit, texts: list[str], rows: dict[str, EncodedRow], clients: int,
                       duration: float, latencies: list[float]) -> float:
    deadline = time.perf_counter() + duration

    async def client(offset: int) -> None:
        index = offset
        while time.perf_counter() < deadline:
            text = texts[index % len(texts)]
            index += clients
            started = time.perf_counter()
            await submit(rows[text])
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return time.perf_counter() - started


async def _ours(handler: Any, config: ServeConfig, texts: list[str], rows: dict[str, EncodedRow],
                clients: int, duration: float, latencies: list[float], sizes: list[int]) -> float:
    def run_batch(key: Any, payloads: list[Any]) -> Any:
        sizes.append(len(payloads))
        return handler.run_batch(key, payloads)

    batcher = Batcher("bench", run_batch, config.max_batch_size, config.max_batch_tokens,
                      config.max_queue_delay_ms / 1000, ServerMetrics())
    batcher.start()
    loop = asyncio.get_running_loop()

    async def submit(row: EncodedRow) -> Any:
        item = WorkItem(row, row.tokens, None, object(), loop.create_future())
        batcher.submit([item])
        return await item.future

    try:
        return await _closed_loop(submit, texts, rows, clients, duration, latencies)
    finally:
        await batcher.close()


async def _serve_batch(handler: Any, config: ServeConfig, texts: list[str],
                       rows: dict[str, EncodedRow], clients: int, duration: float,
                       latencies: list[float], sizes: list[int]) -> float:
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve
    from ray.serve import batching

    # Outside a replica the batch queue's start-up check (is max_ongoing_requests >= the batch
    # size?) has no replica to ask and raises; the check only logs, so skip it here.
    batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = (
        lambda self: None)
    per_text = config.max_batch_tokens / config.max_batch_size
    executor = ThreadPoolExecutor(max_workers=1)

    def size(items: list[EncodedRow]) -> int:
        # One number for both limits: texts, and padded tokens (longest x count) in text units.
        return max(len(items), math.ceil(max(row.tokens for row in items) * len(items) / per_text))

    @serve.batch(max_batch_size=config.max_batch_size,
                 batch_wait_timeout_s=config.max_queue_delay_ms / 1000, batch_size_fn=size)
    async def batched(items: list[EncodedRow]) -> list[Any]:
        sizes.append(len(items))
        return list(await asyncio.get_running_loop().run_in_executor(
            executor, handler.run_batch, None, items))

    try:
        return await _closed_loop(batched, texts, rows, clients, duration, latencies)
    finally:
        executor.shutdown(wait=True)


if __name__ == "__main__":
    main()
