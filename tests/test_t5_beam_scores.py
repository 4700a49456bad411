"""``benchmarks/t5_beam_scores.py`` on the tiny T5: the exported fp32 graphs' beam search gives
PyTorch's own outputs on every check-set source, so their score deficit under PyTorch is 0 to
rounding (a variant's deficit is then measured against that)."""

from __future__ import annotations

import json

import pytest

from benchmarks.t5_beam_scores import main


def test_fp32_beams_are_pytorchs_and_score_no_deficit(t5_v1_1, tmp_path):
    out = tmp_path / "beams.json"
    assert main(["--model", str(t5_v1_1.artifact), "--variants", "fp32", "--beams", "3",
                 "--new-tokens", "8", "--json", str(out),
                 "--markdown", str(tmp_path / "beams.md")]) == 0
    document = json.loads(out.read_text())
    result = document["variants"]["fp32"]
    assert result["same_outputs"] == document["sources"] > 0
    assert result["worst_deficit"] == pytest.approx(0.0, abs=1e-6)
    assert "| fp32 |" in (tmp_path / "beams.md").read_text()
