"""Margin-aware classifier gates: every flip reported, only clear flips fail; calibration texts."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InputError
from engine.manifest import TASK_CLASSIFICATION, ArtifactManifest
from engine.numerics import sigmoid, softmax
from engine.variants.records import FP16, INT8, Flip, VariantFigures
from engine.verification.gate_figures import measure_figures
from export.check_set import check_texts, short_check_texts
from export.parity import OutputPair
from export.variants.calibration import calibration_set, read_texts
from export.variants.gates import default_gate, gates_with_overrides
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.cli import main


def _figures(reference, candidate, activate=softmax, multi_label=False) -> VariantFigures:
    pairs = [
        OutputPair(f"b1[{index}]", f"text {index}", np.array(ours, float), np.array(theirs, float))
        for index, (ours, theirs) in enumerate(zip(reference, candidate))
    ]
    return measure_figures(pairs, activate, multi_label)


def test_a_flip_at_a_near_tie_within_the_bound_passes_and_is_reported():
    # fp32 prefers label 0 by 0.001 in logits (0.0005 in probability); int8 prefers label 1.
    figures = _figures([[0.001, 0.0], [2.0, -1.0]], [[0.0, 0.001], [1.98, -1.0]])
    assert figures.agreement == 0.5
    assert figures.flips == (Flip("b1[0] 'text 0'", pytest.approx(0.0005, rel=1e-3),
                                  pytest.approx(0.0005, rel=1e-3)),)
    assert default_gate(TASK_CLASSIFICATION, INT8).violations(figures) == []


def test_a_flip_where_fp32_had_clearly_decided_fails_the_gate():
    # fp32: p = 0.550 / 0.450 (gap 0.0997); the variant flips it, moving scores by 0.052.
    figures = _figures([[0.2, 0.0]], [[0.0, 0.01]])
    assert figures.clearest_flip_gap == pytest.approx(0.0997, rel=1e-3)
    problems = default_gate(TASK_CLASSIFICATION, INT8).violations(figures)
    assert any("top-2 probability gap was 0.0997 > 0.06 (twice the |Δprob| bound)" in problem
               for problem in problems)
    # The same flip is within a looser bound (2 x 0.06 > 0.0997): the rule follows the bound.
    loose = gates_with_overrides(TASK_CLASSIFICATION, (INT8,), ["int8.max_prob_diff=0.06"])
    assert loose[INT8].violations(figures) == []


def test_every_flip_is_listed_clearest_first_and_multi_label_gaps_use_both_sides():
    figures = _figures([[0.01, 0.0], [0.3, 0.0], [1.0, 0.0]], [[0.0, 0.01], [0.0, 0.3], [1.0, 0]])
    assert [flip.input[:5] for flip in figures.flips] == ["b1[1]", "b1[0]"]
    assert figures.agreement == pytest.approx(1 / 3)
    # Multi-label: label 1 crosses 0.5 from p = sigmoid(-0.01); its gap is |2p - 1|.
    multi = _figures([[2.0, -0.01]], [[2.0, 0.01]], sigmoid, multi_label=True)
    assert multi.clearest_flip_gap == pytest.approx(abs(2 * sigmoid(np.array(-0.01)) - 1))
    assert default_gate(TASK_CLASSIFICATION, FP16).violations(multi) == []


def test_score_variant_gates_do_not_demand_full_agreement():
    for variant in (INT8, FP16):
        gate = default_gate(TASK_CLASSIFICATION, variant)
        assert gate.min_agreement == 0.0 and gate.max_prob_diff is not None


def test_calibration_file_is_one_text_per_line_and_must_have_text(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first text\n\n  second text  \n", encoding="utf-8")
    assert read_texts(path) == ("first text", "second text")
    chosen = calibration_set(path, max_length=64)
    assert chosen.texts == (*check_texts(64), "first text", "second text")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    for bad in (tmp_path / "empty.txt", tmp_path / "missing.txt"):
        with pytest.raises(InputError, match="one text per line"):
            read_texts(bad)


def test_the_gate_runs_on_the_calibration_texts(distilbert, copy_artifact, tmp_path, capsys):
    artifact = copy_artifact(distilbert.artifact)
    texts = ["A calm and pleasant afternoon.", "Terrible service, never again!", "Is it open?"]
    (tmp_path / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    settings = OptimizeSettings(artifact=artifact, variants=(INT8,), timing_runs=1, quiet=True,
                                calibration=tmp_path / "texts.txt")
    record = optimize_artifact(settings).variants[INT8]
    checks = len(check_texts(ArtifactManifest.read(artifact).max_length))
    # b1, one padded batch, the short texts in one padded batch (verify's), calibration
    assert record.figures.inputs == 2 * checks + len(short_check_texts()) + len(texts)
    search = record.made_with["model"]["accuracy_aware"]
    assert search["calibration"] == {"source": str(tmp_path / "texts.txt"),
                                     "texts": checks + len(texts), "beyond_check_set": 3}
    code = main(["optimize", str(artifact), "--int8", "--calibration",
                 str(tmp_path / "none.txt"), "-q"])
    assert code == 2 and "error: Cannot read calibration file" in capsys.readouterr().err
