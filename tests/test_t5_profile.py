"""``benchmarks/t5_profile.py`` on the tiny T5: every figure of the decoder-step profile is there
and consistent (the op breakdown sums to the kernel time, the LM head is found, the floor is the
weight bytes over the bandwidth). The figures themselves are not judged."""

from __future__ import annotations

import json

import pytest

from benchmarks.t5_profile import main


def test_profile_writes_every_figure(t5_v1_1, tmp_path):
    out = tmp_path / "profile.json"
    assert main(["--model", str(t5_v1_1.artifact), "--variants", "fp32", "--runs", "1",
                 "--steps", "4", "--threads", "1", "--json", str(out),
                 "--markdown", str(tmp_path / "profile.md")]) == 0
    (entry,) = json.loads(out.read_text())["variants"]
    profile = entry["profile"]
    assert profile["lm_head_nodes"] and profile["lm_head_ms"] > 0
    assert sum(profile["by_op_ms"].values()) == pytest.approx(profile["kernel_ms"])
    assert entry["engine"]["tokens"] >= 1 and entry["bare_loop"]["with_past_run_ms_per_step"] > 0
    document = json.loads(out.read_text())
    assert entry["weight_floor_ms"] == pytest.approx(
        entry["weight_bytes"] / (document["bandwidth_gb_s"] * 1e9) * 1e3)
    assert "| fp32 |" in (tmp_path / "profile.md").read_text()
