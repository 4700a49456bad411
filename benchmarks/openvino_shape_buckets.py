"""Does compiling OpenVINO for static bucket shapes pay, net of the padding a bucket adds?

For one graph of an artifact run by OpenVINO (the bf16 variant's ``model.onnx`` in bf16, or the
int8-openvino graph in its precision), and for ONNX Runtime's CPU provider (fp32 / int8, which
has no static-shape compile: padding is its only effect), times in one process, alternating:

- ``same``: the dynamic-shape compiled model vs a model reshaped to static [b, s] and compiled,
  both at exactly [b, s] (what static shapes are worth where no padding is needed);
- ``padded``: the dynamic model at the request's real shape vs the static bucket it pads to
  (what a server would see: a 40-token request in a 64 bucket, 5 rows in an 8-row bucket).

It also records each static compile's time (no compiled-model cache) and the RSS it adds.

    python benchmarks/openvino_shape_buckets.py ARTIFACT GRAPH PRECISION|ort --json OUT
    python benchmarks/openvino_shape_buckets.py ARTIFACT VARIANT engine --json OUT

The ``engine`` form times ``Classifier.logits`` of one text (8..120 tokens) loaded with and
without ``openvino_shape_buckets``, alternating, and the first call's bucket compile.

Results: results/openvino-shape-buckets.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# (batch, seq) of the request, (batch, seq) of the bucket it runs in.
SAME = [(1, 8), (1, 16), (1, 32), (1, 64), (1, 128), (8, 128), (32, 128)]
PADDED = [((1, 40), (1, 64)), ((1, 100), (1, 128)), ((8, 40), (8, 64)), ((5, 128), (8, 128)),
          ((8, 72), (8, 128)), ((20, 128), (32, 128))]
VOCAB = 30000


def feeds(batch: int, real: int, seq: int, names: list[str]) -> dict[str, np.ndarray]:
    """A [batch, seq] batch whose first ``real`` tokens are real, the rest masked padding."""
    rng = np.random.default_rng(batch * 1000 + real)
    ids = np.zeros((batch, seq), dtype=np.int64)
    ids[:, :real] = rng.integers(1000, VOCAB, size=(batch, real))
    mask = np.zeros((batch, seq), dtype=np.int64)
    mask[:, :real] = 1
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: values[name] for name in names}


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class OpenVinoRunner:
    """Dynamic and static compiles of one graph with the engine's own OpenVINO settings."""

    def __init__(self, graph: Path, precision: str) -> None:
        import openvino

        self.core = openvino.Core()
        self.graph = graph
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision,
                                       "PERFORMANCE_HINT": "LATENCY"}
        self.model = self.core.read_model(str(graph))
        self.names = [port.get_any_name() for port in self.model.inputs]
        self.dynamic, self.dynamic_compile = self.compile(None)
        self.static: dict[tuple[int, int], Any] = {}
        self.compiles: dict[str, dict[str, float]] = {}

    def compile(self, shape: tuple[int, int] | None) -> tuple[Any, dict[str, float]]:
        before, start = rss_mb(), time.perf_counter()
        model = self.model.clone()
        if shape is not None:
            model.reshape({name: list(shape) for name in self.names})
        compiled = self.core.compile_model(model, "CPU", self.config)
        batch, seq = (max(shape[0], 1), shape[1]) if shape else (1, 8)
        compiled.create_infer_request().infer(feeds(batch, seq, seq, self.names))
        del model
        return compiled, {"compile_s": time.perf_counter() - start, "rss_mb": rss_mb() - before}

    def bucket(self, shape: tuple[int, int]) -> Any:
        if shape not in self.static:
            self.static[shape], figures = self.compile(shape)  # -1: that dimension dynamic
            self.compiles[f"b{shape[0]} s{shape[1]}"] = figures
        return self.static[shape]

    def call(self, shape: tuple[int, int] | None, batch: int, real: int, seq: int):
        """A call at [batch, seq] (``real`` tokens), on the bucket ``shape`` (batch -1: only the
        sequence is static) or the dynamic model (None)."""
        compiled = self.dynamic if shape is None else self.bucket(shape)
        inputs = feeds(batch, real, seq, self.names)
        return lambda: compiled.create_infer_request().infer(inputs)


class OrtRunner:
    """ONNX Runtime's CPU provider: one session; a bucket is only padding."""

    def __init__(self, graph: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.names = [node.name for node in self.session.get_inputs()]
        self.compiles: dict[str, dict[str, float]] = {}

    def call(self, shape: tuple[int, int] | None, batch: int, real: int, seq: int):
        inputs = feeds(batch, real, seq, self.names)
        return lambda: self.session.run(None, inputs)


def alternate(calls: list, budget_s: float, max_rounds: int = 60) -> list[float]:
    """Median ms of each call, timed in rotating order (3 warm-up calls each), within a budget."""
    for _ in range(3):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    stop = time.perf_counter() + budget_s
    while len(times[0]) < max_rounds and (len(times[0]) < 5 or time.perf_counter() < stop):
        shift = len(times[0]) % len(calls)
        for index in [*range(shift, len(calls)), *range(shift)]:
            begin = time.perf_counter()
            calls[index]()
            times[index].append((time.perf_counter() - begin) * 1000)
    return [statistics.median(each) for each in times]


def engine_rows(artifact: Path, variant: str, budget: float) -> dict[str, Any]:
    """The engine's own one-text latency with and without shape buckets, and first-call cost."""
    from engine import Classifier
    from engine.options import RuntimeOptions

    # No compiled-model cache: the first call of a bucket pays its full compile.
    plain = Classifier.load(artifact, variant=variant,
                            options=RuntimeOptions(openvino_cache_dir=""))
    bucketed = Classifier.load(artifact, variant=variant,
                               options=RuntimeOptions(openvino_shape_buckets=8,
                                                      openvino_cache_dir=""))
    rows = []
    for words in (4, 12, 28, 38, 60, 100):
        text = " ".join(["word"] * words)
        start = time.perf_counter()
        bucketed.logits(text)
        first = (time.perf_counter() - start) * 1000
        tokens = int(bucketed.tokenizer.encode_rows([text])[0].tokens)
        medians = alternate([partial(plain.logits, text), partial(bucketed.logits, text)], budget)
        rows.append({"tokens": tokens, "bucket": bucketed.session.buckets[-1],
                     "dynamic_ms": medians[0], "bucketed_ms": medians[1],
                     "first_call_ms": first})
        print(json.dumps(rows[-1]), flush=True)
    return {"variant": variant, "rows": rows, "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact", type=Path)
    parser.add_argument("graph")
    parser.add_argument("precision", help="bf16 / f32 (OpenVINO) or ort")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per comparison")
    args = parser.parse_args()
    if args.precision == "engine":
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(engine_rows(args.artifact, args.graph, args.budget),
                                        indent=1))
        return
    graph = args.artifact / args.graph
    ort = args.precision == "ort"
    runner: OpenVinoRunner | OrtRunner = (OrtRunner(graph) if ort
                                          else OpenVinoRunner(graph, args.precision))
    cases = [("padded", request, bucket) for request, bucket in PADDED]
    if not ort:
        cases = [("same", shape, shape) for shape in SAME] + cases
    rows = []
    for kind, (batch, real), (bucket_batch, bucket_seq) in cases:
        calls = [runner.call(None, batch, real, real),
                 runner.call((bucket_batch, bucket_seq), bucket_batch, real, bucket_seq)]
        if not ort:  # only the sequence static: the batch runs unpadded
            calls.append(runner.call((-1, bucket_seq), batch, real, bucket_seq))
        medians = alternate(calls, args.budget)
        rows.append({"kind": kind, "request": [batch, real], "bucket": [bucket_batch, bucket_seq],
                     "dynamic_ms": medians[0], "bucket_ms": medians[1],
                     "seq_bucket_ms": medians[2] if not ort else None})
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "graph": args.graph, "precision": args.precision, "rows": rows,
        "dynamic_compile": getattr(runner, "dynamic_compile", None),
        "bucket_compiles": runner.compiles, "load_average": os.getloadavg(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
