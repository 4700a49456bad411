"""Time to first streamed token (TTFT) at batch 1: ``onnx-engine serve`` over HTTP against the
in-process floor, one machine, one run.

The floor is what no server can beat: in-process, tokenize the source, run the encoder once and
the decoder once (``Seq2SeqLM.generate(max_new_tokens=1)``, the same calls the first streamed
token needs). TTFT is what a client sees: from sending ``POST /models/NAME/generate_stream`` on
a kept-alive connection to reading the first ``data:`` event. The target (issue 21) is TTFT at
most 1.5x the floor. For contrast it also times the whole answer of the same request, unstreamed,
which is what a client waited for before streaming. Medians over ``--runs`` rounds, after
warm-up, the timings taking turns within each round; the server runs as a subprocess on
127.0.0.1 (ephemeral port), stopped with SIGTERM.
Writes ``benchmarks/results/stream-ttft.{json,md}``.

    python -m benchmarks.stream_bench --model ARTIFACT [--model t5-small ...] [--runs 40]
                                      [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import engine
from benchmarks.serve_bench import RESULTS, started
from onnx_engine.bench.machine import load_average
from onnx_engine.bench.models import resolve_target
from onnx_engine.commands.loadtest import run_meta

SOURCE = "translate English to German: The weather is nice today and we walk outside."
TARGET_RATIO = 1.5
WARMUP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a text2text-generation artifact, or the built-in t5-small (random "
                             "weights, built and exported on first use); repeat for several")
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--new-tokens", type=int, default=32,
                        help="max_new_tokens of each request (the whole answer's length)")
    args = parser.parse_args()
    load_before = load_average()
    targets = [resolve_target(model, args.cache_dir, log=sys.stderr) for model in args.model]
    results = {target.name: {**measure(target.artifact, args.runs, args.new_tokens),
                             "source_model": target.manifest.source_model,
                             "random_weights": target.random_weights}
               for target in targets}
    meta = run_meta(_command(), load_before)
    stem = RESULTS / "stream-ttft"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "models": results}, indent=2))
    table = markdown(results, meta)
    stem.with_suffix(".md").write_text(table)
    print(table)


def measure(artifact: Path, runs: int, new_tokens: int) -> dict[str, Any]:
    """Medians in milliseconds: the in-process floor, TTFT over HTTP, the whole answers.

    The four timings take turns within each round, so a shared machine's load drifts over all
    of them alike; ``ttft_ratio`` is the median of the rounds' TTFT / floor.
    """
    lm = engine.load(artifact)
    name = "t5"
    serve = [sys.executable, "-m", "onnx_engine", "serve", f"{name}={artifact}", "--port", "0"]
    body = {"inputs": SOURCE, "parameters": {"max_new_tokens": new_tokens}}
    times: dict[str, list[float]] = {key: [] for key in (
        "floor_ms", "ttft_ms", "streamed_whole_ms", "whole_answer_ms", "in_process_whole_ms")}
    with started(serve) as server, httpx.Client(base_url=server["url"], timeout=120) as client:
        for run in range(WARMUP + runs):
            round_times = {
                "floor_ms": _ms(lambda: lm.generate(SOURCE, max_new_tokens=1)),
                **_stream_times(client, f"/models/{name}/generate_stream", body),
                "whole_answer_ms": _ms(
                    lambda: client.post(f"/models/{name}", json=body).raise_for_status()),
                "in_process_whole_ms": _ms(
                    lambda: lm.generate(SOURCE, max_new_tokens=new_tokens)),
            }
            if run >= WARMUP:
                for key, value in round_times.items():
                    times[key].append(value)
    ratios = [t / f for t, f in zip(times["ttft_ms"], times["floor_ms"])]
    return {
        **{key: round(statistics.median(values), 3) for key, values in times.items()},
        "ttft_ratio": round(statistics.median(ratios), 3),
        "new_tokens": new_tokens,
        "runs": runs,
    }


def _stream_times(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, float]:
    """One stream on the kept-alive connection: ms to its first event and to its end."""
    started_at = time.perf_counter()
    first_at = None
    with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first_at is None and line.startswith("data:"):
                first_at = time.perf_counter()
    ended_at = time.perf_counter()
    if first_at is None:
        raise RuntimeError(f"{path} sent no event")
    return {"ttft_ms": (first_at - started_at) * 1000,
            "streamed_whole_ms": (ended_at - started_at) * 1000}


def _ms(call: Any) -> float:
    started_at = time.perf_counter()
    call()
    return (time.perf_counter() - started_at) * 1000


def markdown(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Time to first streamed token, batch 1",
        "",
        f"`{meta['command']}` on {meta['cpu']} ({meta['cores']} cores), load "
        f"{meta['load_before']} before, {meta['load_after']} after. Medians in ms.",
        "",
        "| model | floor: encoder + 1 decoder step, in-process | TTFT over HTTP | TTFT / floor "
        f"(target <= {TARGET_RATIO}, median of rounds) | whole stream | whole answer, "
        "unstreamed | whole, in-process |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        verdict = "met" if row["ttft_ratio"] <= TARGET_RATIO else "missed"
        lines.append(
            f"| {name} | {row['floor_ms']} | {row['ttft_ms']} | {row['ttft_ratio']} ({verdict}) | "
            f"{row['streamed_whole_ms']} | {row['whole_answer_ms']} | "
            f"{row['in_process_whole_ms']} |")
    lines.append("")
    lines.append(f"Each request asks for {next(iter(results.values()))['new_tokens']} new tokens. "
                 "Models (exported from): " + "; ".join(
                     f"{name}: `{row['source_model']}`" for name, row in results.items()) + ".")
    return "\n".join(lines) + "\n"


def _command() -> str:
    """How this run was started, as the usage line spells it (``python -m``)."""
    return " ".join(["python -m benchmarks.stream_bench", *map(shlex.quote, sys.argv[1:])])


if __name__ == "__main__":
    main()
