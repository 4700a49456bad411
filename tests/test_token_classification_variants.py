"""Token-classification variants and benchmark: int8 gated per token against PyTorch, loaded by
the engine, and the engine timed against the transformers pipeline."""

from __future__ import annotations

import json

import pytest
from helpers import assert_same_entities
from tiny_token_classifiers import NER_TEXTS

import engine
from engine.manifest import ArtifactManifest
from engine.variants.choice import variant_records
from engine.variants.records import INT8
from export.check_set import SENTENCES
from onnx_engine.cli import main

FAST = ("--timing-runs", "1", "-q")


@pytest.fixture(scope="module")
def int8_artifact(token_classifier_factory, tmp_path_factory):
    """The BERT NER artifact copied and optimized with --int8 (gated per token)."""
    import shutil

    root = tmp_path_factory.mktemp("ner-int8")
    shutil.copytree(token_classifier_factory("bert-ner").artifact, root / "artifact")
    assert main(["optimize", str(root / "artifact"), "--int8", *_calibration(root), *FAST]) == 0
    return root / "artifact"


def _calibration(folder):
    """A small calibration file (the default one has hundreds of sentences: minutes here)."""
    path = folder / "calibration.txt"
    path.write_text("\n".join([*NER_TEXTS, *SENTENCES]) + "\n", encoding="utf-8")
    return ("--calibration", str(path))


def test_int8_is_gated_on_every_token_of_the_check_set(int8_artifact):
    record = variant_records(ArtifactManifest.read(int8_artifact))[INT8]
    assert record.passed, record.reason
    fp32 = engine.load(int8_artifact, variant="fp32")
    tokens = sum(len(t.logits) for t in fp32.token_logits(
        [str(text) for text in _check_texts(fp32.tokenizer.max_length)]))
    assert record.figures.inputs >= tokens  # one prediction per token (calibration texts too)
    assert record.gate.max_prob_diff == 0.1 and record.gate.min_agreement == 0.95
    assert record.figures.agreement >= 0.95


def test_int8_runs_in_the_engine_with_pipeline_shaped_answers(int8_artifact):
    ner = engine.load(int8_artifact, variant="int8")
    fp32 = engine.load(int8_artifact, variant="fp32")
    assert ner.variant == "int8"
    ours = ner(list(NER_TEXTS), aggregation_strategy="none", ignore_labels=[])
    theirs = fp32(list(NER_TEXTS), aggregation_strategy="none", ignore_labels=[])
    assert [[e["index"] for e in row] for row in ours] == [[e["index"] for e in row]
                                                          for row in theirs]


def test_a_broken_gate_keeps_int8_out(token_classifier_factory, copy_artifact, capsys):
    artifact = copy_artifact(token_classifier_factory("bert-ner").artifact)
    assert main(["optimize", str(artifact), "--int8", "--gate", "int8.max_prob_diff=1e-9",
                 *_calibration(artifact.parent), *FAST]) == 1
    record = variant_records(ArtifactManifest.read(artifact))[INT8]
    assert not record.passed and "max |Δprob|" in record.reason
    assert "FAILED: max |Δprob|" in capsys.readouterr().out
    assert engine.load(artifact).variant == "fp32"  # auto never picks it


@pytest.mark.parametrize("variant", ["fused", "bf16"])
def test_fused_and_bf16_pass_their_per_token_gates(token_classifier_factory, copy_artifact,
                                                    variant):
    """fused is exact (entities equal fp32's); bf16 (OpenVINO) where this CPU runs it."""
    from engine.openvino import bf16_unusable_reason

    if variant == "bf16" and (reason := bf16_unusable_reason()) is not None:
        pytest.skip(f"OpenVINO cannot run bf16 here: {reason}")
    artifact = copy_artifact(token_classifier_factory("bert-ner").artifact)
    flag = {"fused": "--fusion", "bf16": "--bf16"}[variant]
    assert main(["optimize", str(artifact), flag, *_calibration(artifact.parent), *FAST]) == 0
    record = variant_records(ArtifactManifest.read(artifact))[variant]
    assert record.passed and record.figures.agreement >= record.gate.min_agreement
    ner = engine.load(artifact, variant=variant)
    if variant == "fused":
        assert_same_entities(ner(list(NER_TEXTS), aggregation_strategy="average"),
                             engine.load(artifact, variant="fp32")(
                                 list(NER_TEXTS), aggregation_strategy="average"))


def test_verify_re_gates_int8_torch_free(int8_artifact):
    assert main(["verify", str(int8_artifact)]) == 0


def test_bench_engine_vs_pipeline_agrees_with_pytorch(token_classifier_factory, tmp_path):
    # The WordPiece model: the benchmark builds texts of exact token counts word by word, which
    # the tiny byte-level BPE (trained on a few sentences) cannot do for 8 tokens.
    artifact = token_classifier_factory("bert-ner").artifact
    status = main([
        "bench", str(artifact), "--batch", "1,2", "--seq", "8",
        "--contenders", "engine,ort-raw,pipeline", "--warmup", "1", "--rounds", "2",
        "--min-rounds", "1", "--cold-runs", "0", "--no-progress", "--no-floor",
        "--json", str(tmp_path / "bench.json"),
    ])
    assert status == 0
    model = json.loads((tmp_path / "bench.json").read_text())["models"][0]
    assert model["task"] == "token-classification"
    assert {(row["contender"], row["batch"]) for row in model["rows"]} == {
        (name, batch) for name in ("engine", "ort-raw", "pipeline") for batch in (1, 2)}
    assert all(row["p50_ms"] > 0 and row["speedup_vs_pipeline"] > 0 for row in model["rows"])
    (agreement,) = model["agreement"]
    assert agreement["candidate"] == "engine fp32" and agreement["reference"] == "pytorch fp32"
    assert agreement["agreement"] == 1.0 and agreement["rows_identical"] == 1.0


def test_bench_contenders_answer_like_the_pipeline(token_classifier_factory):
    from onnx_engine.bench.contenders.base import ContenderSettings
    from onnx_engine.bench.contenders.token_classification import (
        EngineTokenClassifier,
        PipelineTokenClassifier,
    )

    exported = token_classifier_factory("bert-ner")
    settings = ContenderSettings(exported.artifact, str(exported.checkpoint), "fp32",
                                 {"model": exported.artifact / "model.onnx"}, threads=1)
    answers = []
    for cls in (EngineTokenClassifier, PipelineTokenClassifier):
        contender = cls(settings)
        contender.load()
        contender.prepare(list(NER_TEXTS))
        answers.append(contender.run())
    assert_same_entities(*answers)


def _check_texts(max_length):
    from export.check_set import check_texts

    return check_texts(max_length)
