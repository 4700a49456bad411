"""`onnx-engine optimize` on the tiny T5 models: variants built, gated per token, picked by `auto`,
refused when broken, and an fp16 variant that stays finite where naive fp16 overflows."""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from helpers import corrupting_recipe

import engine
from engine import Seq2SeqLM
from engine.artifact import Artifact, sha256_of
from engine.errors import ArtifactError, InputError, OnnxEngineError
from engine.manifest import TASK_TEXT2TEXT, ArtifactManifest
from engine.numerics import softmax
from engine.options import RuntimeOptions
from engine.seq2seq.graphs import GRAPH_ROLES, Seq2SeqGraphs
from engine.variants.choice import fastest, variant_records
from engine.variants.records import FP16, FP32, FUSED, INT8, TARGET_CPU, VariantRecord
from engine.verification.gate_figures import measure_figures
from export.exporter import ExportSettings, export_model
from export.tasks.text2text.exporter import Seq2SeqExporter
from export.tasks.text2text.variants import greedy_path_pairs, position_pairs
from export.variants.fusion import fuse_graph
from export.variants.gates import default_gate
from export.variants.optimize import (
    OptimizeSettings,
    VariantRecipe,
    default_recipes,
    optimize_artifact,
)
from onnx_engine.cli import main

MADE = (FUSED, INT8, FP16)
# Sources that are not in the check set the gates were measured on.
NEW_SOURCES = ["summarize: the garden is green and the house is old.", "Numbers 7 8 9, symbols ! ?"]
FP16_MAX = 65504.0
# Multiplies the first feed-forward down-projection of encoder and decoder: its output then
# reaches ~1e5 (above fp16's 65504) while fp32, and T5's RMSNorm after it, cope.
OVERFLOW_SCALE = 1e5


@dataclass(frozen=True)
class OptimizedT5:
    exported: Any  # conftest's ExportedT5
    artifact: Path
    manifest: ArtifactManifest
    table: str  # what `onnx-engine optimize` printed


@pytest.fixture(scope="module", params=["t5", "t5-v1_1"])
def optimized_t5(request, t5_factory, tmp_path_factory) -> OptimizedT5:
    """A copy of a tiny T5 artifact after `onnx-engine optimize --all`."""
    exported = t5_factory(request.param)
    artifact = tmp_path_factory.mktemp(f"optimized-{request.param}") / "artifact"
    shutil.copytree(exported.artifact, artifact)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["optimize", str(artifact), "--all", "--timing-runs", "1", "-q"])
    assert code == 0, printed.getvalue()
    return OptimizedT5(exported, artifact, ArtifactManifest.read(artifact), printed.getvalue())


def test_cli_optimize_all_writes_each_variant_with_its_gate_and_figures(optimized_t5):
    manifest = optimized_t5.manifest
    rows = {line.split()[0]: line for line in optimized_t5.table.splitlines()[1:]}
    assert all("passed" in rows[name] for name in (FP32, *MADE))
    assert "|Δlogit|<=0.0001 top1>=100%" in rows[FUSED] and "flip<=0.5" in rows[INT8]
    for name in MADE:
        record = manifest.variants[name]
        assert record.passed, f"{name}: {record.reason}"
        gate, figures = record.gate, record.figures
        assert gate == default_gate(TASK_TEXT2TEXT, name)
        assert gate.violations(figures) == [] and figures.finite
        assert figures.inputs > 100 and figures.sequence_agreement is not None
        assert set(record.made_with) == set(GRAPH_ROLES)
        for file in record.graphs.values():
            assert manifest.files[file].sha256 == sha256_of(optimized_t5.artifact / file)
    fused = manifest.variants[FUSED].figures
    assert fused.max_abs_diff <= 1e-4 and fused.agreement == 1.0
    fp16_kept = manifest.variants[FP16].made_with["decoder"]["float16"]["kept_fp32_nodes"]
    assert sum("DenseReluDense/wo" in node for node in fp16_kept) == 2  # one per decoder layer
    tied_head = optimized_t5.exported.key == "t5"  # its LM head reads Transpose(shared.weight)
    int8_decoder = manifest.variants[INT8].made_with["decoder"]
    assert int8_decoder["folded_weight_transposes"] == int(tied_head)
    Artifact.open(optimized_t5.artifact)


def test_cpu_variants_are_timed_and_auto_loads_the_fastest_that_passed(optimized_t5):
    records = variant_records(optimized_t5.manifest)
    for name in (FP32, FUSED, INT8):
        assert all(ms > 0 for ms in records[name].speeds[TARGET_CPU].latency_ms.values())
    assert records[FP16].speeds == {}
    usable = [record for record in records.values() if record.passed and record.suits(TARGET_CPU)]
    expected = fastest(usable, TARGET_CPU).name
    assert Seq2SeqLM.load(optimized_t5.artifact, provider="cpu").variant == expected
    assert engine.load(optimized_t5.artifact, provider="cpu").variant == expected


@pytest.mark.parametrize("variant, gate_of", [(FP32, FUSED), (FUSED, FUSED), (INT8, INT8)])
def test_each_cpu_variant_is_within_its_gate_on_new_sources(optimized_t5, variant, gate_of):
    lm = Seq2SeqLM.load(optimized_t5.artifact, provider="cpu", variant=variant)
    assert lm.variant == variant
    pairs = greedy_path_pairs(lm, optimized_t5.exported.reference, sources=NEW_SOURCES)
    figures = measure_figures(position_pairs(pairs), softmax)
    assert default_gate(TASK_TEXT2TEXT, gate_of).violations(figures) == []
    assert all(len(sequence.token_ids) > 0 for sequence in lm.generate(NEW_SOURCES))


def test_fp16_is_refused_on_cpu(optimized_t5):
    with pytest.raises(InputError, match="made for CUDA"):
        Seq2SeqLM.load(optimized_t5.artifact, provider="cpu", variant=FP16)


def test_decoder_logits_teacher_force_given_ids_as_the_gates_do(t5_factory):
    """The greedy-path check feeds token ids, not texts: same logits as ``logits`` for a text."""
    lm = Seq2SeqLM.load(t5_factory("t5").artifact, provider="cpu")
    target = lm.tokenizer.encode(["Das Haus ist alt."]).input_ids
    ids = np.concatenate([[[lm.settings.decoder_start_token_id]], target[:, :-1]], axis=1)
    expected = lm.logits(NEW_SOURCES[0], "Das Haus ist alt.").logits
    for use_cache in (False, True):
        ours = lm.decoder_logits(NEW_SOURCES[0], ids, use_cache=use_cache)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    for bad in (ids[0], ids.astype(np.float32), np.concatenate([ids, ids])):
        with pytest.raises(InputError, match="decoder_input_ids must be integers shaped"):
            lm.decoder_logits(NEW_SOURCES[0], bad)


def _optimized(artifact: Path, variant: str, recipe: VariantRecipe | None = None) -> VariantRecord:
    recipes = default_recipes()
    if recipe is not None:
        recipes[variant] = recipe
    settings = OptimizeSettings(artifact=artifact, variants=(variant,), timing_runs=1, quiet=True)
    return optimize_artifact(settings, recipes).variants[variant]


@pytest.mark.parametrize("variant, broken_limit", [
    (FUSED, "max |Δlogits|"), (INT8, "where the reference preferred its own by a logit margin"),
])
def test_a_t5_variant_with_corrupted_weights_is_refused_by_its_gate(
    t5_factory, copy_artifact, tmp_path, variant, broken_limit
):
    artifact = copy_artifact(t5_factory("t5").artifact)
    record = _optimized(artifact, variant, corrupting_recipe(default_recipes()[variant], tmp_path))
    assert not record.passed
    assert broken_limit in record.reason and "worst input" in record.reason
    assert record.figures.clearest_flip > default_gate(TASK_TEXT2TEXT, INT8).flip_margin
    assert Seq2SeqLM.load(artifact, provider="cpu").variant == FP32
    with pytest.raises(ArtifactError, match="failed its accuracy gate"):
        Seq2SeqLM.load(artifact, provider="cpu", variant=variant)


@dataclass(frozen=True)
class OverflowingT5:
    checkpoint: Path
    artifact: Path
    reference: Any  # export.tasks.text2text.exporter.Seq2SeqReference


@pytest.fixture(scope="module")
def overflowing_t5(t5_factory, tmp_path_factory) -> OverflowingT5:
    """The tiny T5 with feed-forward outputs beyond fp16's range, exported (fp32 parity holds)."""
    base = t5_factory("t5")
    root = tmp_path_factory.mktemp("t5-overflow")
    checkpoint = root / "checkpoint"
    shutil.copytree(base.checkpoint, checkpoint)
    model = transformers.T5ForConditionalGeneration.from_pretrained(checkpoint)
    with torch.no_grad():
        for stack in (model.encoder, model.decoder):
            stack.block[0].layer[-1].DenseReluDense.wo.weight.mul_(OVERFLOW_SCALE)
    model.save_pretrained(checkpoint)
    artifact = root / "artifact"
    export_model(ExportSettings(
        model=str(checkpoint), output=artifact, task=TASK_TEXT2TEXT, quiet=True
    ))
    return OverflowingT5(checkpoint, artifact, Seq2SeqExporter().load_reference(str(checkpoint)))


def _largest_ff_output(reference) -> float:
    """The largest |output| of any feed-forward down-projection on a check sentence, in PyTorch."""
    model, outputs = reference.model, []
    hooks = [
        block.layer[-1].DenseReluDense.wo.register_forward_hook(
            lambda module, inputs, output: outputs.append(float(output.abs().max()))
        )
        for stack in (model.encoder, model.decoder) for block in stack.block
    ]
    try:
        reference.target_logits(NEW_SOURCES[:1], ["Das Haus ist alt."])
    finally:
        for hook in hooks:
            hook.remove()
    return max(outputs)


def _naive_half_precision(source: Path, target: Path, config) -> dict:
    """Every float op in fp16, as the classifier's fp16 variant is made (no T5 block lists)."""
    return fuse_graph(source, target, {**config, "model_type": "not-t5"}, float16=True)


def test_fp16_t5_stays_finite_where_naive_fp16_overflows(overflowing_t5, copy_artifact):
    assert _largest_ff_output(overflowing_t5.reference) > FP16_MAX
    naive = copy_artifact(overflowing_t5.artifact)
    recipe = VariantRecipe(default_recipes()[FP16].target, _naive_half_precision)
    record = _optimized(naive, FP16, recipe)
    assert not record.passed and "NaN or inf" in record.reason
    assert record.figures.finite is False
    # The engine refuses to turn such logits into tokens.
    options = RuntimeOptions(provider="cpu")
    lm = Seq2SeqLM.from_graphs(Artifact.open(naive), record.graphs, options, FP16)
    lm.graphs = Seq2SeqGraphs(lm.graphs.sessions)  # as load() builds it: NaN/inf is an error
    with pytest.raises(OnnxEngineError, match="NaN/inf logits"):
        lm.generate(NEW_SOURCES[0], max_new_tokens=2)

    mixed = _optimized(overflowing_t5.artifact, FP16)
    assert mixed.passed, mixed.reason
    figures = mixed.figures
    assert figures.finite and figures.agreement >= default_gate(TASK_TEXT2TEXT, FP16).min_agreement
    artifact = Artifact.open(overflowing_t5.artifact)
    lm = Seq2SeqLM.from_graphs(artifact, mixed.graphs, options, FP16)
    assert np.isfinite(lm.encode(NEW_SOURCES).last_hidden_state).all()
