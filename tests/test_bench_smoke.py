"""A seconds-long run of ``onnx-engine bench`` on the tiny classifier: the benchmark's plumbing
(JSON fields, ratios, floor, cold start, plot) works; the figures themselves are not judged here,
they depend on the machine (full runs: ``pytest benchmarks/ --benchmark-only``)."""

from __future__ import annotations

import json

import pytest

from onnx_engine.bench.targets import encoder_speedup_limit
from onnx_engine.cli import main

CONTENDERS = ("engine", "ort-raw", "pipeline")
ROW_FIELDS = (
    "p50_ms", "p90_ms", "p99_ms", "items_per_s", "speedup_vs_pipeline", "time_vs_ort_raw",
    "floor_ms", "vs_floor", "float_flops", "weight_bytes", "cold_start_s", "peak_rss_mb",
)


@pytest.fixture(scope="module")
def bench_run(distilbert, tmp_path_factory):
    """One small benchmark run: batch 1 and 2, seq 8, three contenders, one cold start each."""
    out = tmp_path_factory.mktemp("bench")
    status = main([
        "bench", str(distilbert.artifact), "--batch", "1,2", "--seq", "8",
        "--contenders", ",".join(CONTENDERS), "--warmup", "1", "--rounds", "2",
        "--min-rounds", "1", "--cold-runs", "1", "--no-progress",
        "--json", str(out / "bench.json"), "--plot", str(out / "bench.png"),
        "--markdown", str(out / "bench.md"),
    ])
    return status, out


def test_bench_exits_cleanly(bench_run):
    status, _ = bench_run
    assert status == 0


def test_json_records_machine_command_and_peaks(bench_run):
    document = json.loads((bench_run[1] / "bench.json").read_text())
    assert document["command"].startswith("onnx-engine bench ")
    machine = document["machine"]
    assert machine["cpu_model"] and machine["physical_cores"] >= 1
    assert machine["threads_used"] >= 1 and machine["packages"]["onnxruntime"]
    assert machine["environment"]["OMP_WAIT_POLICY"]
    assert 0.0 <= machine["cpu_time_stolen_share"] < 1.0  # Linux: read from /proc/stat
    assert document["peaks"]["fp32_gflops"] > 0 and document["peaks"]["bandwidth_gb_s"] > 0


def test_every_row_has_latency_ratios_floor_and_memory(bench_run):
    model = json.loads((bench_run[1] / "bench.json").read_text())["models"][0]
    rows = model["rows"]
    assert {(row["contender"], row["batch"]) for row in rows} == {
        (name, batch) for name in CONTENDERS for batch in (1, 2)
    }
    for row in rows:
        for field in ROW_FIELDS:
            assert row[field] is not None and row[field] > 0, (row["contender"], field)
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    pipeline = [row for row in rows if row["contender"] == "pipeline"]
    ort_raw = [row for row in rows if row["contender"] == "ort-raw"]
    assert all(row["speedup_vs_pipeline"] == pytest.approx(1.0) for row in pipeline)
    assert all(row["time_vs_ort_raw"] == pytest.approx(1.0) for row in ort_raw)


def test_engine_agrees_with_pytorch_and_reports_cold_start(bench_run):
    model = json.loads((bench_run[1] / "bench.json").read_text())["models"][0]
    (agreement,) = model["agreement"]
    assert agreement["candidate"] == "engine fp32" and agreement["agreement"] == 1.0
    engine = next(entry for entry in model["cold_starts"] if entry["contender"] == "engine")
    assert "torch" not in engine["imported"] and engine["seconds"] > 0


def test_plot_and_markdown_are_written(bench_run):
    out = bench_run[1]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| engine | fp32 | 1 | 8 |" in (out / "bench.md").read_text()


def test_bf16_and_openvino_peers_run_where_the_cpu_has_them_else_say_why(distilbert, tmp_path):
    """pytorch-bf16 needs AVX512-BF16 or AMX; openvino-raw needs OpenVINO installed."""
    from engine.cpu import current_cpu
    from engine.session import OPENVINO, available_providers

    status = main([
        "bench", str(distilbert.artifact), "--batch", "1", "--seq", "8",
        "--contenders", "engine,pytorch,pytorch-bf16,openvino-raw", "--warmup", "1",
        "--rounds", "2", "--min-rounds", "1", "--cold-runs", "0", "--no-progress", "--no-floor",
        "--json", str(tmp_path / "bench.json"),
    ])
    assert status == 0
    document = json.loads((tmp_path / "bench.json").read_text())
    assert document["machine"]["cpu_isa_flags"] == list(current_cpu().flags)
    model = document["models"][0]
    ran = {row["contender"] for row in model["rows"]}
    notes = " ".join(model["notes"])
    assert ("pytorch-bf16" in ran) == current_cpu().has_bf16
    assert ("pytorch-bf16" in ran) or "no AVX512-BF16 or AMX" in notes
    assert ("openvino-raw" in ran) == (OPENVINO in available_providers())
    assert ("openvino-raw" in ran) or "openvino-raw fp32 skipped" in notes
    best = [check for check in model["targets"] if "best PyTorch" in check["target"]]
    assert len(best) == 1 and best[0]["workload"] == "b1 s8"
    pytorch = {row["contender"]: row["p50_ms"] for row in model["rows"]
               if row["contender"] in ("pytorch", "pytorch-bf16")}
    fastest = min(pytorch, key=pytorch.__getitem__)
    engine = next(row["p50_ms"] for row in model["rows"] if row["contender"] == "engine")
    assert best[0]["measured"] == pytest.approx(pytorch[fastest] / engine)
    assert f"(best PyTorch: {fastest})" in best[0]["target"]
    assert best[0]["limit"] == encoder_speedup_limit(document["machine"]["cpu_isa_flags"])


@pytest.mark.parametrize(("flags", "limit"), [
    (["amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni"], 2.5),
    (["avx2", "avx512_bf16", "avx512_vnni"], 2.0),
    (["avx2", "fma"], 1.5),
    (None, 1.5),
])
def test_encoder_targets_follow_the_cpu(flags, limit):
    """Issue 19's limits: 2.5x best PyTorch with AMX-INT8, 2x with VNNI/BF16; unknown: 1.5x."""
    assert encoder_speedup_limit(flags) == limit


def test_bf16_variant_runs_in_the_engine_and_openvino_raw_not_in_ort_raw(
    distilbert, tmp_path, copy_artifact
):
    """bf16 is OpenVINO's run of the fp32 files: the engine and openvino-raw run it, ort-raw
    says why it cannot, and ``auto`` resolves to it where it timed fastest."""
    from engine.openvino import bf16_unusable_reason

    if (reason := bf16_unusable_reason()) is not None:
        pytest.skip(f"OpenVINO cannot run bf16 here: {reason}")
    artifact = copy_artifact(distilbert.artifact)
    assert main(["optimize", str(artifact), "--bf16", "--timing-runs", "1", "-q"]) == 0
    status = main([
        "bench", str(artifact), "--batch", "1", "--seq", "8",
        "--contenders", "engine,ort-raw,openvino-raw", "--variants", "fp32,bf16",
        "--warmup", "1", "--rounds", "2", "--min-rounds", "1", "--cold-runs", "0",
        "--no-progress", "--no-floor", "--json", str(tmp_path / "bench.json"),
    ])
    assert status == 0
    model = json.loads((tmp_path / "bench.json").read_text())["models"][0]
    ran = {(row["contender"], row["variant"]) for row in model["rows"]}
    assert {("engine", "bf16"), ("openvino-raw", "bf16"), ("ort-raw", "fp32")} <= ran
    assert ("ort-raw", "bf16") not in ran
    assert any("ort-raw bf16 skipped: ort-raw does not run the 'bf16' variant" in note
               for note in model["notes"])
