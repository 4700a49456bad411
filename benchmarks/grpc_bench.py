"""gRPC beside HTTP: the server's overhead over the in-process call, at one client.

One ``onnx-engine serve --grpc-port 0`` process (started here, on 127.0.0.1, stopped with
SIGTERM) serves a tiny seeded classifier (``onnx_engine.sample_models``) or ``--model``, any
artifact or checkpoint ``serve_bench`` takes. One client alternates, text by text, the same V2
inference three ways: the engine in this process, ``tritonclient.http`` (binary tensors) and
``tritonclient.grpc``, so that all three meet the same machine load. Each answer's labels are
checked against the in-process ones. The overhead is the p50 of each server path minus the
in-process p50. Writes ``benchmarks/results/grpc-overhead.{json,md}``.

    python -m benchmarks.grpc_bench [--model PATH_OR_NAME] [--pairs 400] [--duration 30]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import engine
from benchmarks.serve_bench import RESULTS, started
from onnx_engine.bench.machine import load_average
from onnx_engine.bench.models import resolve_target
from onnx_engine.commands.loadtest import DEFAULT_TEXTS, run_meta
from onnx_engine.sample_models import TinyClassifierSpec, build_tiny_classifier

NAME = "m"
PATHS = ("in-process", "http", "grpc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None,
                        help="artifact, checkpoint or built-in name (default: a tiny classifier)")
    parser.add_argument("--pairs", type=int, default=400, help="rounds of the three calls at most")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds at most")
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    args = parser.parse_args()
    artifact = _artifact(args.model, args.cache_dir)
    texts = [line for line in DEFAULT_TEXTS.read_text().splitlines() if line.strip()]
    load_before = load_average()
    command = [sys.executable, "-m", "onnx_engine", "serve", f"{NAME}={artifact}", "--port", "0",
               "--grpc-port", "0"]
    with started(command) as server:
        grpc_address = server["announced"].split("(gRPC on ", 1)[1].split(")", 1)[0]
        timings = _alternate(engine.load(artifact), server["url"], grpc_address, texts,
                             args.pairs, args.duration)
    p50 = {path: round(float(np.percentile(np.array(values[1:]) * 1000, 50)), 3)
           for path, values in timings.items()}  # the first round warms every path up
    result = {
        "rounds": len(timings["grpc"]) - 1,
        "p50_ms": p50,
        "overhead_p50_ms": {path: round(p50[path] - p50["in-process"], 3)
                            for path in ("http", "grpc")},
        "meta": {**run_meta(_command(),
                            load_before), "artifact": str(artifact)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grpc-overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    table = _markdown(result)
    (RESULTS / "grpc-overhead.md").write_text(table, encoding="utf-8")
    print(table)


def _artifact(model: str | None, cache_dir: Path) -> Path:
    if model is not None:
        return resolve_target(model, cache_dir, log=sys.stderr).artifact
    checkpoint = cache_dir / "tiny-classifier" / "checkpoint"
    if not checkpoint.is_dir():
        build_tiny_classifier(checkpoint, TinyClassifierSpec())
    return resolve_target(str(checkpoint), cache_dir, log=sys.stderr).artifact


def _alternate(model: Any, url: str, grpc_address: str, texts: list[str], rounds: int,
               duration_s: float) -> dict[str, list[float]]:
    """Seconds of each call, the three paths taking turns text by text.

    Raises:
        RuntimeError: a server answered another label than the in-process call.
    """
    http = httpclient.InferenceServerClient(url.split("//", 1)[1])
    grpc = grpcclient.InferenceServerClient(grpc_address)
    calls = {
        "in-process": lambda text: [row["label"] for row in model([text])],
        "http": lambda text: _labels(http.infer(NAME, _inputs(httpclient, text))),
        "grpc": lambda text: _labels(grpc.infer(NAME, _inputs(grpcclient, text))),
    }
    timings: dict[str, list[float]] = {path: [] for path in PATHS}
    deadline = time.perf_counter() + duration_s
    for index in range(rounds):
        if time.perf_counter() > deadline:
            break
        text = texts[index % len(texts)]
        answers = {}
        for path, call in calls.items():
            started_at = time.perf_counter()
            answers[path] = call(text)
            timings[path].append(time.perf_counter() - started_at)
        if len({tuple(labels) for labels in answers.values()}) != 1:
            raise RuntimeError(f"the answers for {text[:40]!r} differ: {answers}")
    return timings


def _inputs(module: Any, text: str) -> list:
    tensor = module.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text], dtype=object))
    return [tensor]


def _labels(result: Any) -> list[str]:
    return [label.decode() for label in result.as_numpy("label")]


def _markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        "# gRPC and HTTP overhead over the in-process call, one client",
        "",
        f"`{meta['command']}` on {meta['cpu']} ({meta['cores']} cores), load average "
        f"{meta['load_before']} before, {meta['load_after']} after; "
        f"{result['rounds']} rounds.",
        "",
        "| path | p50 ms | overhead p50 ms |",
        "|---|---|---|",
    ]
    for path in PATHS:
        overhead = result["overhead_p50_ms"].get(path, "")
        lines.append(f"| {path} | {result['p50_ms'][path]} | {overhead} |")
    return "\n".join(lines) + "\n"


def _command() -> str:
    """How this run was started, as the usage line spells it (``python -m``)."""
    return " ".join(["python -m benchmarks.grpc_bench", *map(shlex.quote, sys.argv[1:])])


if __name__ == "__main__":
    main()
