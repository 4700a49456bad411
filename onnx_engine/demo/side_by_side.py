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

from engine.manifest import TASK_TEXT2TEXT
from engine.numerics import softmax
from engine.options import RuntimeOptions
from engine.tasks.classification import Classifier
from engine.tasks.text2text import Seq2SeqLM
from export.exporter import ExportSettings, export_model
from onnx_engine.sample_models import (
    TinyClassifierSpec,
    TinyT5Spec,
    build_tiny_classifier,
    build_tiny_t5,
)

DEMO_SENTENCES = (
    "I've been waiting for a HuggingFace course my whole life.",
    "I hate this so much!",
)
RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS (seeded, built locally): labels are not meaningful"
T5_DEMO_SOURCES = (
    "translate English to German: The cat sat on the mat.",
    "summarize: The committee met on Tuesday and agreed to publish the report next month.",
)
T5_DEMO_TARGET = "Die Katze saß auf der Matte."
T5_RANDOM_NOTE = (
    "tiny T5 v1.1 (gated-GELU, untied LM head), SentencePiece tokenizer trained locally, "
    "RANDOM WEIGHTS (seeded): generated text is not meaningful"
)
T5_DEMO_NEW_TOKENS = 16


@dataclass(frozen=True)
class DemoSettings:
    workdir: Path = Path("artifacts/demo")
    classifier_model: str | None = None  # a real checkpoint (hub id or folder) instead of tiny
    t5_model: str | None = None  # a real T5 checkpoint instead of the tiny random one
    provider: str = "auto"
    quiet: bool = False


def run_classifier_demo(settings: DemoSettings, out: TextIO) -> float:
    """Export, verify and classify the demo sentences; returns the max |Δ score| vs PyTorch."""
    from export.verify import verify_artifact

    model = settings.classifier_model
    title = model or f"tiny DistilBERT classifier, {RANDOM_WEIGHTS_NOTE}"
    out.write(f"\n=== Classifier: {title} ===\n")
    if model is None:
        tiny = build_tiny_classifier(settings.workdir / "tiny-distilbert", TinyClassifierSpec())
        model = str(tiny)
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


def run_seq2seq_demo(settings: DemoSettings, out: TextIO) -> float:
    """Export, verify, then generate and score with the engine and PyTorch side by side.

    Returns the max |Δ| between engine and PyTorch probabilities of the generated tokens (the
    same scale as the classifier demo's scores), or inf when any generated token differs.
    """
    from export.tasks.text2text.exporter import Seq2SeqExporter
    from export.verify import verify_artifact

    model = settings.t5_model
    out.write(f"\n=== T5 text2text-generation: {model or T5_RANDOM_NOTE} ===\n")
    if model is None:
        model = str(build_tiny_t5(settings.workdir / "tiny-t5", TinyT5Spec(variant="t5-v1_1")))
    artifact = settings.workdir / "t5-onnx"
    export_model(ExportSettings(
        model=model, output=artifact, task=TASK_TEXT2TEXT, force=True, quiet=settings.quiet
    ))
    out.write(f"verify: {verify_artifact(artifact).report.summary()}\n")
    lm = Seq2SeqLM.load(artifact, options=RuntimeOptions(provider=settings.provider))
    reference = Seq2SeqExporter().load_reference(model)
    out.write(f"engine providers: {lm.providers}\n")

    sources = list(T5_DEMO_SOURCES)
    worst, identical = 0.0, True
    for num_beams in (1, 4):
        ours = lm.generate(sources, max_new_tokens=T5_DEMO_NEW_TOKENS, num_beams=num_beams,
                           output_logits=True)
        theirs = reference.generate(sources, max_new_tokens=T5_DEMO_NEW_TOKENS, num_beams=num_beams)
        out.write(f"\n{'greedy' if num_beams == 1 else f'beam search ({num_beams} beams)'}, "
                  f"up to {T5_DEMO_NEW_TOKENS} new tokens:\n")
        for index, (source, sequence) in enumerate(zip(sources, ours)):
            reference_ids = theirs.token_ids[index]
            identical &= sequence.token_ids.tolist() == reference_ids
            reference_text = reference.tokenizer.decode(reference_ids, skip_special_tokens=True)
            out.write(f"{source}\n  engine : {sequence.text!r} {sequence.token_ids.tolist()}\n"
                      f"  pytorch: {reference_text!r} {reference_ids}\n")
            worst = max(worst, _generated_probability_difference(lm, reference, source, sequence))
    out.write(f"generated tokens identical: {identical}; "
              f"max |Δ token probability| = {worst:.2e}\n")
    _write_teacher_forced(lm, reference, sources[0], T5_DEMO_TARGET, out)
    return worst if identical else float("inf")


def _generated_probability_difference(lm, reference, source: str, sequence) -> float:
    """Max |Δ| of the chosen tokens' probabilities vs PyTorch's logits for the same prefix."""
    prefix = np.concatenate([[lm.settings.decoder_start_token_id], sequence.token_ids[:-1]])
    expected = softmax(reference.decoder_logits([source], prefix[None, :])[0].astype(np.float64))
    ours = softmax(sequence.step_logits.astype(np.float64))
    positions = np.arange(len(sequence.token_ids))
    chosen = sequence.token_ids
    return float(np.max(np.abs(expected[positions, chosen] - ours[positions, chosen])))


def _write_teacher_forced(lm, reference, source: str, target: str, out: TextIO) -> None:
    forced = lm.logits([source], [target])
    expected, _ = reference.target_logits([source], [target])
    out.write(f"\nteacher-forced logits, source {source!r}, target {target!r}:\n")
    out.write(f"{'pos':>3} {'target token':<14} {'engine logit':>13} {'pytorch logit':>14} "
              f"{'engine top-1':<14} {'pytorch top-1':<14}\n")
    for position, token_id in enumerate(forced.target_ids[0]):
        ours, theirs = forced.logits[0, position], expected[0, position]
        out.write(
            f"{position:>3} {lm.tokenizer.token_to_text(token_id):<14} {ours[token_id]:>13.6f} "
            f"{theirs[token_id]:>14.6f} {lm.tokenizer.token_to_text(int(np.argmax(ours))):<14} "
            f"{lm.tokenizer.token_to_text(int(np.argmax(theirs))):<14}\n"
        )
    out.write(f"max |Δ logit| over the target = {np.max(np.abs(forced.logits - expected)):.2e}\n")


def demo_max_difference(results: list[float]) -> float:
    return float(np.max(results)) if results else 0.0
