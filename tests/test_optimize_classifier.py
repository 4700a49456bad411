"""`onnx-engine optimize` on the tiny classifiers: variants built, gated, timed, loaded by
`auto`."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import corrupting_recipe, torch_logits

import engine
from engine import Classifier
from engine.artifact import Artifact, sha256_of
from engine.errors import ArtifactError, HashMismatchError, InputError
from engine.manifest import TASK_CLASSIFICATION, ArtifactManifest
from engine.variants.choice import fastest, variant_records
from engine.variants.records import FP16, FP32, FUSED, INT8, TARGET_CPU
from engine.verification.gate_figures import measure_figures
from export.check_set import check_texts
from export.parity import OutputPair
from export.variants.gates import default_gate
from export.variants.optimize import OptimizeSettings, default_recipes, optimize_artifact
from onnx_engine.cli import main

# One single-label model per architecture family and the multi-label (sigmoid) one.
OPTIMIZED_KEYS = ("distilbert-2", "bert-3-multilabel", "roberta-4")
MADE = (FUSED, INT8, FP16)
FAST = ("--timing-runs", "1", "-q")


@dataclass(frozen=True)
class OptimizedClassifier:
    checkpoint: Path
    artifact: Path
    manifest: ArtifactManifest


@pytest.fixture(scope="module", params=OPTIMIZED_KEYS)
def optimized(request, classifier_factory, tmp_path_factory) -> OptimizedClassifier:
    """A copy of a tiny exported classifier with the three ONNX Runtime variants added (the
    OpenVINO ones have their own tests; ``--all`` is run below, once)."""
    exported = classifier_factory(request.param)
    artifact = tmp_path_factory.mktemp(f"optimized-{request.param}") / "artifact"
    shutil.copytree(exported.artifact, artifact)
    settings = OptimizeSettings(artifact=artifact, variants=MADE, timing_runs=2, quiet=True)
    manifest = optimize_artifact(settings)
    return OptimizedClassifier(exported.checkpoint, artifact, manifest)


def test_every_variant_is_built_hashed_and_passes_its_stated_gate(optimized):
    manifest = ArtifactManifest.read(optimized.artifact)
    for name in MADE:
        record = manifest.variants[name]
        assert record.passed, f"{name}: {record.reason}"
        gate, figures = record.gate, record.figures
        assert gate == default_gate(TASK_CLASSIFICATION, name)
        assert gate.violations(figures) == [] and figures.inputs > 0 and figures.finite
        assert record.made_with["model"]["source"] == "model.onnx"
        file = record.graphs["model"]
        assert manifest.files[file].sha256 == sha256_of(optimized.artifact / file)
    assert manifest.variants[FUSED].made_with["model"]["fused_operators"].get("Attention")
    Artifact.open(optimized.artifact)  # every file, variants included, matches its hash


def test_cpu_variants_are_timed_at_creation_and_fp16_is_not(optimized):
    records = variant_records(optimized.manifest)
    for name in (FP32, FUSED, INT8):
        speed = records[name].speeds[TARGET_CPU]
        assert speed.runs == 2 and all(ms > 0 for ms in speed.latency_ms.values())
    assert records[FP16].speeds == {}


@pytest.mark.parametrize("variant, gate_of", [(FP32, FUSED), (FUSED, FUSED), (INT8, INT8)])
def test_each_cpu_variant_matches_pytorch_within_its_gate(optimized, variant, gate_of):
    classifier = Classifier.load(optimized.artifact, provider="cpu", variant=variant)
    assert classifier.variant == variant
    texts = [*check_texts(classifier.tokenizer.max_length), "Another plain sentence.", "ok"]
    ours = classifier.logits(texts, batch_size=len(texts))
    reference = torch_logits(optimized.checkpoint, texts)
    pairs = [OutputPair(str(i), text, reference[i], ours[i]) for i, text in enumerate(texts)]
    figures = measure_figures(pairs, classifier.scores, classifier.activation == "sigmoid")
    assert default_gate(TASK_CLASSIFICATION, gate_of).violations(figures) == []


def test_auto_loads_the_fastest_variant_that_passed_for_cpu(optimized):
    records = variant_records(optimized.manifest)
    usable = [record for record in records.values() if record.passed and record.suits(TARGET_CPU)]
    expected = fastest(usable, TARGET_CPU).name
    assert Classifier.load(optimized.artifact, provider="cpu").variant == expected
    assert engine.load(optimized.artifact, provider="cpu", variant="auto").variant == expected
    assert expected != FP16


def test_fp16_is_refused_on_cpu_and_a_changed_variant_file_at_load(optimized, copy_artifact):
    with pytest.raises(InputError, match="made for CUDA"):
        Classifier.load(optimized.artifact, provider="cpu", variant=FP16)
    changed = copy_artifact(optimized.artifact)
    path = changed / optimized.manifest.variants[INT8].graphs["model"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError, match="int8"):
        Classifier.load(changed, provider="cpu", variant=INT8)
    # Files are hashed when used: the untouched fp32 graph still loads.
    assert Classifier.load(changed, provider="cpu", variant=FP32).variant == FP32


# fused fp32 must agree everywhere; int8 is judged on scores, so its flips must be clear ones.
@pytest.mark.parametrize(
    "variant, broken", [(FUSED, "top-1 agreement"), (INT8, "top-2 probability gap")]
)
def test_a_variant_with_corrupted_weights_is_refused_by_its_gate(
    distilbert, copy_artifact, tmp_path, variant, broken
):
    artifact = copy_artifact(distilbert.artifact)
    recipes = default_recipes()
    recipes[variant] = corrupting_recipe(recipes[variant], tmp_path)
    settings = OptimizeSettings(artifact=artifact, variants=(variant,), timing_runs=1, quiet=True)
    record = optimize_artifact(settings, recipes).variants[variant]
    assert not record.passed
    assert broken in record.reason and "worst input" in record.reason
    assert Classifier.load(artifact, provider="cpu").variant == FP32
    with pytest.raises(ArtifactError, match=f"failed its accuracy gate.*{broken}"):
        Classifier.load(artifact, provider="cpu", variant=variant)


def test_cli_optimize_all_shows_each_gate_and_classify_runs_a_variant(
    distilbert, copy_artifact, capsys
):
    artifact = copy_artifact(distilbert.artifact)
    assert main(["optimize", str(artifact), "--all", *FAST]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert all("passed" in rows[name] for name in (FP32, *MADE))
    assert "|Δprob|<=0.03" in rows[INT8] and "|Δlogit|<=0.0001" in rows[FUSED]
    assert main(["classify", str(artifact), "I love it", "--variant", INT8]) == 0
    line = json.loads(capsys.readouterr().out)
    expected = Classifier.load(artifact, variant=INT8)("I love it")[0]
    assert (line["label"], line["score"]) == (expected["label"], expected["score"])


def test_cli_gate_override_keeps_a_variant_out_and_says_why(distilbert, copy_artifact, capsys):
    artifact = copy_artifact(distilbert.artifact)
    code = main(["optimize", str(artifact), "--int8", "--gate", "int8.max_prob_diff=1e-9", *FAST])
    assert code == 1
    record = ArtifactManifest.read(artifact).variants[INT8]
    assert record.gate.max_prob_diff == 1e-9
    assert not record.passed and "max |Δprob|" in record.reason
    assert "kept out of use" in capsys.readouterr().err


def test_cli_export_with_variant_flags_writes_gated_variants(distilbert, tmp_path):
    output = tmp_path / "exported"
    assert main(["export", str(distilbert.checkpoint), str(output), "--int8", *FAST]) == 0
    manifest = ArtifactManifest.read(output)
    assert set(manifest.variants) == {FP32, INT8} and manifest.variants[INT8].passed
    assert np.isfinite(Classifier.load(output, variant=INT8).logits(["fine"])).all()
