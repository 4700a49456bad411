"""``benchmarks/gpu_check.sh`` without a GPU: its prerequisite check fails clearly, and its
benchmark and copy-count code runs end to end on the CPU (fp32) with the tiny models.

What it measures on a GPU is not tested here (no GPU in CI): its figures stay open until it runs
on one.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cuda_probe import cuda_unusable_reason
from engine.timing import TimingPlan
from onnx_engine.bench import gpu_prereqs
from onnx_engine.bench.gpu_bench import GpuBenchPlan, run
from onnx_engine.bench.gpu_prereqs import Prerequisite, prerequisites, report
from onnx_engine.bench.gpu_report import markdown, write_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(cuda_unusable_reason() is None, reason="a working GPU is present")
def test_check_mode_without_a_gpu_names_what_is_missing_and_exits_2():
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--check"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "MISSING onnxruntime-gpu" in result.stdout
    assert "CUDAExecutionProvider" in result.stdout
    assert "gpu_check: not ready" in result.stderr
    assert "== tests marked cuda" not in result.stdout  # nothing past the check ran


def test_unknown_arguments_are_refused():
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--fast"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "unknown argument '--fast'" in result.stderr


def test_prerequisites_pass_only_when_every_check_does():
    ok = lambda: Prerequisite("a", "1.0", None)  # noqa: E731
    missing = lambda: Prerequisite("b", "", "not installed; bring its wheel")  # noqa: E731
    assert all(item.problem is None for item in prerequisites((ok, ok)))
    text = report(prerequisites((ok, missing)))
    assert text.splitlines() == ["ok      a: 1.0", "MISSING b: not installed; bring its wheel"]


def test_a_too_new_transformers_is_named_for_the_export():
    check = gpu_prereqs._transformers_for_export
    assert check(type("m", (), {"__version__": "4.57.6"})) is None
    assert "too new" in check(type("m", (), {"__version__": "5.2.0"}))


def test_the_gpu_benchmark_runs_on_cpu_with_the_tiny_models(distilbert, t5_v1_1, tmp_path):
    plan = GpuBenchPlan(
        device="cpu", classifier_shapes=((2, 12),), t5_batches=(2,), t5_beams=(1, 3),
        new_tokens=4, source_tokens=8,
        timing=TimingPlan(warmup=0, rounds=1, min_rounds=1, timed_per_turn=1, budget_s=1.0),
    )
    document = run(distilbert.artifact, t5_v1_1.artifact, plan, command="test")
    workloads = {(row["model"], row["workload"]) for row in document["latency"]}
    assert workloads == {("classifier", "b2 s12"), ("t5", "greedy b2"), ("t5", "beam3 b2")}
    assert {row["contender"] for row in document["latency"]} == {"engine fp32", "pytorch fp32"}
    assert all(row["p50_ms"] > 0 for row in document["latency"])
    assert len(document["speedups"]) == len(workloads)
    assert all(target["status"] == "not measured" for target in document["targets"])  # no fp16
    for copies in document["copies"]:
        assert copies["kv_cache_copies"] == 0
        assert copies["decoder_steps"] >= 1
        assert set(copies["downloads"]) == {"logits"}
    path = write_results(document, tmp_path)
    assert path.name == "gpu-cpu.json" and path.with_suffix(".md").is_file()
    assert "| t5 | beam3 b2 | engine fp32 |" in markdown(document)


def test_prepare_makes_and_gates_fp16_once_where_cuda_works(distilbert, monkeypatch, tmp_path):
    """``prepare`` on two copies of the tiny classifier standing in for both built-ins (the real
    run builds full-size ones; fp16 T5 gating costs minutes here and is tested with the variants):
    fp16 is made and gated (on CPU here, as recorded), and a second call reuses it."""
    from onnx_engine.bench import models
    from onnx_engine.bench.gpu_bench import fp16_gates, prepare

    copies = {name: Path(shutil.copytree(source.artifact, tmp_path / name))
              for name, source in (("distilbert-base", distilbert), ("t5-small", distilbert))}
    monkeypatch.setattr(models, "resolve_target",
                        lambda name, cache_dir, log=None: models.target_for_artifact(copies[name]))
    log = io.StringIO()
    classifier, t5 = prepare(tmp_path / "cache", log=log)
    assert (classifier, t5) == (copies["distilbert-base"], copies["t5-small"])
    for artifact in (classifier, t5):
        gate = fp16_gates(models.target_for_artifact(artifact))
        assert gate["made"] and gate["checked_on"] == "cpu"
    assert log.getvalue().count("making and gating") == 2
    prepare(tmp_path / "cache", log=log)
    assert log.getvalue().count("making and gating") == 2  # reused, not re-made
