"""``onnx-engine demo``: export, verify and run a model end to end, engine beside PyTorch.

Without internet there is no pretrained checkpoint, so by default the demo builds a small seeded
DistilBERT with RANDOM weights: its labels are meaningless, but engine and PyTorch must agree on
them to the last digits, which is what the demo shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from engine.classifier import Classifier
from engine.session import RuntimeOptions
from export.exporter import ExportSettings, export_model
from export.tiny_models import TinyClassifierSpec, build_tiny_classifier

DEMO_SENTENCES = (
    "I've been waiting for a HuggingFace course my whole life.",
    "I hate this so much!",
)
RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS (seeded, built locally): labels are not meaningful"


@dataclass(frozen=True)
class DemoSettings:
    workdir: Path = Path("artifacts/demo")
    classifier_model: str | None = None  # a real checkpoint (hub id or folder) instead of tiny
    provider: str = "auto"
    quiet: bool = False


def run_classifier_demo(settings: DemoSettings, out: TextIO) -> float:
    """Export, verify and classify the demo sentences; returns the max |Δ score| vs PyTorch."""
    from export.verify import verify_artifact

    model = settings.classifier_model
    title = model or f"tiny DistilBERT classifier, {RANDOM_WEIGHTS_NOTE}"
    out.write(f"\n=== Classifier: {title} ===\n")
    if model is None:
        model = str(build_tiny_classifier(settings.workdir / "tiny-distilbert", TinyClassifierSpec()))
    artifact = settings.workdir / "classifier-onnx"
    export_model(ExportSettings(model=model, output=artifact, force=True, quiet=settings.quiet))
    verification = verify_artifact(artifact)
    out.write(f"verify: {verification.report.summary()}\n")

    classifier = Classifier.load(artifact, options=RuntimeOptions(provider=settings.provider))
    engine_results = classifier(list(DEMO_SENTENCES))
    pipeline_results = _pipeline_results(model, list(DEMO_SENTENCES))
    out.write(f"engine providers: {classifier.providers}\n")
    out.write(f"{'text':<60} {'engine':>22} {'pytorch pipeline':>22}\n")
    worst = 0.0
    for text, ours, theirs in zip(DEMO_SENTENCES, engine_results, pipeline_results):
        worst = max(worst, abs(ours["score"] - theirs["score"]))
        out.write(
            f"{text:<60} {ours['label']:>12} {ours['score']:.6f} "
            f"{theirs['label']:>12} {theirs['score']:.6f}\n"
        )
    labels_agree = [r["label"] for r in engine_results] == [r["label"] for r in pipeline_results]
    out.write(f"labels identical: {labels_agree}; max |Δ score| = {worst:.2e}\n")
    return worst if labels_agree else float("inf")


def _pipeline_results(model: str, texts: list[str]) -> list[dict]:
    from export.dependencies import require

    transformers = require("transformers")
    pipe = transformers.pipeline("text-classification", model=model, device="cpu")
    return pipe(texts)


def demo_max_difference(results: list[float]) -> float:
    return float(np.max(results)) if results else 0.0
