"""Variant records, gates and the choice of variant, on hand-made manifests (no model needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from engine.errors import ArtifactError, CorruptArtifactError, InputError
from engine.manifest import ArtifactManifest, GraphSpec, TokenizerSpec
from engine.session import CPU, CUDA
from engine.variants.choice import select_variant, variant_file_name, variant_records
from engine.variants.records import (
    AUTO,
    FP16,
    FP32,
    FUSED,
    INT8,
    TARGET_ANY,
    TARGET_CPU,
    TARGET_CUDA,
    VariantFigures,
    VariantGate,
    VariantRecord,
    VariantSpeed,
)
from engine.verification.gate_figures import measure_figures
from export.parity import OutputPair
from export.variants.gates import gates_with_overrides, parse_gate_override

ROLES = ("model",)
SEQ2SEQ_ROLES = ("encoder", "decoder", "decoder_with_past")


def _record(name, target, passed=True, cpu_ms=None, roles=ROLES, reason=""):
    speeds = {TARGET_CPU: VariantSpeed({"short": cpu_ms, "long": cpu_ms * 10}, 3)} if cpu_ms else {}
    graphs = {role: f"{role}.{name}.onnx" for role in roles}
    return VariantRecord(name, graphs, target, passed=passed, reason=reason, speeds=speeds)


def _manifest(*records, roles=ROLES, fp32_ms=None):
    variants = {record.name: record for record in records}
    if fp32_ms is not None:
        variants[FP32] = _record(FP32, TARGET_ANY, cpu_ms=fp32_ms, roles=roles)
    graphs = {role: GraphSpec(f"{role}.onnx", (), ()) for role in roles}
    return ArtifactManifest(
        task="text-classification", source_model="m", engine_version="0", opset=18,
        max_length=8, graphs=graphs, files={}, tokenizer=TokenizerSpec(0, "[PAD]"),
        variants=variants,
    )


ALL_PASSING = (
    _record(FUSED, TARGET_ANY, cpu_ms=1.0),
    _record(INT8, TARGET_CPU, cpu_ms=0.5),
    _record(FP16, TARGET_CUDA),
)


def test_without_variants_auto_and_fp32_give_the_exported_graphs():
    manifest = _manifest()
    assert select_variant(manifest, AUTO, on_cuda=False) == (FP32, {"model": "model.onnx"})
    assert select_variant(manifest, AUTO, on_cuda=True) == (FP32, {"model": "model.onnx"})
    assert select_variant(manifest, FP32, on_cuda=False) == (FP32, {"model": "model.onnx"})


def test_auto_on_cpu_picks_the_fastest_measured_variant():
    manifest = _manifest(*ALL_PASSING, fp32_ms=2.0)
    assert select_variant(manifest, AUTO, on_cuda=False) == (INT8, {"model": "model.int8.onnx"})
    slow_int8 = _record(INT8, TARGET_CPU, cpu_ms=3.0)
    manifest = _manifest(ALL_PASSING[0], slow_int8, fp32_ms=2.0)
    assert select_variant(manifest, AUTO, on_cuda=False)[0] == FUSED


def test_auto_falls_back_to_the_preference_order_when_a_candidate_was_not_timed():
    manifest = _manifest(_record(FUSED, TARGET_ANY, cpu_ms=0.1), _record(INT8, TARGET_CPU))
    assert select_variant(manifest, AUTO, on_cuda=False)[0] == INT8  # int8 first on CPU


def test_auto_never_picks_int8_on_cuda_nor_fp16_on_cpu():
    manifest = _manifest(*ALL_PASSING, fp32_ms=2.0)
    assert select_variant(manifest, AUTO, on_cuda=True)[0] == FP16
    only_fp16 = _manifest(_record(FP16, TARGET_CUDA))
    assert select_variant(only_fp16, AUTO, on_cuda=False)[0] == FP32
    only_int8 = _manifest(_record(INT8, TARGET_CPU, cpu_ms=0.1))
    assert select_variant(only_int8, AUTO, on_cuda=True)[0] == FP32


def test_auto_skips_a_variant_that_failed_its_gate():
    failed = _record(INT8, TARGET_CPU, passed=False, cpu_ms=0.01, reason="max |Δprob| 0.2 > 0.03")
    manifest = _manifest(failed, fp32_ms=2.0)
    assert select_variant(manifest, AUTO, on_cuda=False)[0] == FP32


def test_a_failed_variant_asked_for_by_name_is_refused_with_its_reason():
    failed = _record(INT8, TARGET_CPU, passed=False, reason="max |Δprob| 0.2 > 0.03")
    with pytest.raises(ArtifactError, match=r"failed its accuracy gate.*0\.2 > 0\.03"):
        select_variant(_manifest(failed), INT8, on_cuda=False)


def test_a_variant_that_was_not_made_names_the_command_that_makes_it():
    with pytest.raises(ArtifactError, match="optimize ARTIFACT --fusion"):
        select_variant(_manifest(), FUSED, on_cuda=False)


@pytest.mark.parametrize("variant, on_cuda, provider", [(INT8, True, "cpu"), (FP16, False, "cuda")])
def test_a_variant_for_the_other_provider_is_refused(variant, on_cuda, provider):
    with pytest.raises(InputError, match=f"provider='{provider}'"):
        select_variant(_manifest(*ALL_PASSING), variant, on_cuda=on_cuda)


def test_unknown_variant_name_lists_the_choices():
    choices = "auto, fp32, fused, int8, fp16, bf16, int8-openvino, int4"
    with pytest.raises(InputError, match=choices):
        select_variant(_manifest(), "int2", on_cuda=False)


def test_selection_is_role_generic():
    records = [_record(INT8, TARGET_CPU, cpu_ms=0.5, roles=SEQ2SEQ_ROLES)]
    manifest = _manifest(*records, roles=SEQ2SEQ_ROLES, fp32_ms=2.0)
    name, files = select_variant(manifest, AUTO, on_cuda=False)
    assert name == INT8
    assert files == {role: f"{role}.int8.onnx" for role in SEQ2SEQ_ROLES}
    assert select_variant(manifest, FP32, on_cuda=False)[1] == {
        role: f"{role}.onnx" for role in SEQ2SEQ_ROLES
    }


def test_records_survive_the_manifest_round_trip():
    figures = VariantFigures(0.01, 0.002, 1.0, 16, True, "b1[0] ''")
    record = replace(ALL_PASSING[1], gate=VariantGate(max_prob_diff=0.03), figures=figures,
                     made_with={"model": {"per_channel": True}}, checked_on=TARGET_CPU)
    manifest = ArtifactManifest.from_dict(json.loads(_manifest(record).to_json()))
    assert variant_records(manifest)[INT8] == record


def test_a_malformed_record_is_a_corrupt_artifact_when_the_manifest_is_read():
    data = json.loads(_manifest().to_json())
    data["variants"] = {INT8: {"target": "cpu"}}
    with pytest.raises(CorruptArtifactError, match=r"variants\['int8'\] is malformed"):
        ArtifactManifest.from_dict(data)


def test_variant_files_sit_beside_their_graph():
    assert variant_file_name("model.onnx", INT8) == "model.int8.onnx"
    assert variant_file_name("decoder_model.onnx", FP16) == "decoder_model.fp16.onnx"


def test_gate_lists_every_broken_limit():
    gate = VariantGate(max_abs_diff=1e-4, max_prob_diff=0.03, min_agreement=1.0)
    assert gate.violations(VariantFigures(1e-5, 1e-6, 1.0, 10)) == []
    problems = gate.violations(VariantFigures(0.5, 0.2, 0.9, 10, True, "b1[2] 'x'"))
    assert len(problems) == 4 and "1 of 10 inputs differ" in problems[2]
    assert "outputs contain NaN" in gate.violations(VariantFigures(0.0, 0.0, 1.0, 1, False))[0]


def _pairs(reference, candidate):
    return [OutputPair(f"b1[{i}]", "t", np.array(r), np.array(c))
            for i, (r, c) in enumerate(zip(reference, candidate))]


def test_figures_measure_diffs_agreement_and_non_finite_outputs():
    softmax = lambda x: np.exp(x) / np.exp(x).sum()  # noqa: E731
    figures = measure_figures(_pairs([[1.0, 0.0], [0.0, 0.1]], [[1.0, 0.0], [0.2, 0.1]]), softmax)
    assert figures.agreement == 0.5 and figures.inputs == 2 and figures.finite
    assert figures.max_abs_diff == pytest.approx(0.2)
    assert figures.worst_input.startswith("b1[1]")
    broken = measure_figures(_pairs([[1.0, 0.0]], [[np.nan, 0.0]]), softmax)
    assert not broken.finite and broken.max_prob_diff == float("inf")


def test_multi_label_agreement_is_per_label_threshold():
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    same = measure_figures(
        _pairs([[2.0, -1.0, 0.5]], [[0.1, -3.0, 0.4]]), sigmoid, multi_label=True
    )
    assert same.agreement == 1.0  # argmax moved, but every label keeps its side of 0.5
    flipped = measure_figures(_pairs([[2.0, -1.0]], [[2.0, 0.1]]), sigmoid, multi_label=True)
    assert flipped.agreement == 0.0


def test_gate_overrides_change_one_limit_and_reject_bad_text():
    gates = gates_with_overrides("text-classification", (INT8, FUSED), ["int8.max_prob_diff=0.05"])
    assert gates[INT8].max_prob_diff == 0.05 and gates[FUSED].max_abs_diff == 1e-4
    assert parse_gate_override("fused.max_abs_diff=none") == (FUSED, "max_abs_diff", None)
    for bad in ("int8=0.1", "int8.tolerance=1", "int8.max_prob_diff=abc"):
        with pytest.raises(InputError):
            parse_gate_override(bad)
    with pytest.raises(InputError, match="not being made"):
        gates_with_overrides("text-classification", (INT8,), ["fp16.max_prob_diff=0.1"])


def _fake_session(on_cuda):
    return SimpleNamespace(on_cuda=on_cuda, providers=[CUDA if on_cuda else CPU])


@pytest.mark.parametrize("cuda_works, expected", [(True, FP16), (False, INT8)])
def test_auto_chooses_again_for_cpu_when_cuda_falls_back(monkeypatch, cuda_works, expected):
    """With provider='auto' and a CUDA build, fp16 is chosen; if CUDA falls back, never fp16."""
    import engine.variants.sessions as variant_sessions

    opened = []

    def open_graphs(artifact, graphs, options, providers=None):
        opened.append((dict(graphs), options.provider))
        on_cuda = cuda_works and options.provider != "cpu"
        return {role: _fake_session(on_cuda) for role in graphs}

    monkeypatch.setattr(variant_sessions, "requested_providers", lambda provider: [CUDA, CPU])
    monkeypatch.setattr(variant_sessions, "open_graphs", open_graphs)
    artifact = SimpleNamespace(manifest=_manifest(*ALL_PASSING, fp32_ms=2.0))
    chosen = variant_sessions.open_variant(artifact, AUTO, variant_sessions.RuntimeOptions())
    assert chosen.name == expected
    assert all(session.on_cuda == cuda_works for session in chosen.sessions.values())
    if not cuda_works:
        assert opened[-1] == ({"model": "model.int8.onnx"}, "cpu")
