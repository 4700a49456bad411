"""ONNX Runtime's CPU arena kept (engine default), shrunk after each run (the server's choice:
``RuntimeOptions(arena_shrinkage=True)``) or off: median latency of one short text and of a
maximal batch (32 texts of BOUND tokens), and the RSS the process keeps after that batch.

    python benchmarks/arena_shrinkage.py on|shrink|off ARTIFACT BOUND

Run each mode in its own process (the RSS is the process's). Results: results/arena_shrinkage.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psutil

import engine
from engine.options import RuntimeOptions


def main(mode: str, artifact: str, bound: int) -> None:
    options = RuntimeOptions(memory_arena=mode != "off", arena_shrinkage=mode == "shrink",
                             spin_wait=False)
    model = engine.load(artifact, options=options)
    if model.task == "text2text-generation":
        def call(texts, batch_size):
            return model.generate(texts, max_new_tokens=16, batch_size=batch_size, truncation=True)
    else:
        call = model.embed if hasattr(model, "embed") else model.logits
    short, long_text = ["a short text"], " ".join(["word"] * (bound + 50))
    call(short, batch_size=32)
    process = psutil.Process()
    before = process.memory_info().rss

    def median_ms(texts: list[str], repeats: int) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call(texts, batch_size=32)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    short_ms, batch_ms = median_ms(short, 100), median_ms([long_text] * 32, 7)
    kept = (process.memory_info().rss - before) / 2**20
    print(f"| {Path(artifact).name} | {mode} | {short_ms:.2f} | {batch_ms:.1f} | +{kept:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
