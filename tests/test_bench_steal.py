"""CPU time stolen by the hypervisor during a benchmark (onnx_engine/bench/machine.py): read from
/proc/stat, reported with the figures, and a run with much of it marks its targets inconclusive
(on a shared VM, steal slowed CTranslate2 3.5x and the engine 1.2x: ratios then mislead)."""

from __future__ import annotations

from onnx_engine.bench.machine import cpu_time_counters, stolen_share
from onnx_engine.bench.markdown import markdown_table


def _stat(tmp_path, steal: int, idle: int):
    path = tmp_path / f"stat-{steal}-{idle}"
    # user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  100 0 50 {idle} 0 0 0 {steal} 30 0\ncpu0 1 2 3\n")
    return path


def test_stolen_share_is_steal_over_all_cpu_time_between_two_readings(tmp_path):
    start = cpu_time_counters(_stat(tmp_path, steal=10, idle=840))
    end = cpu_time_counters(_stat(tmp_path, steal=30, idle=1020))
    assert start == (10, 1000) and end == (30, 1200)  # guest time is inside user: not added
    assert stolen_share(start, end) == 0.1
    assert cpu_time_counters(tmp_path / "missing") is None
    assert stolen_share(None, end) is None and stolen_share(end, start) is None


def _document(stolen: float | None) -> dict:
    machine = {"cpu_model": "Test CPU", "physical_cores": 2, "threads_used": 2,
               "cpu_isa_flags": ["avx2"], "packages": {"onnxruntime": "1", "torch": "2"},
               "load_average_at_start": [0.5, 0, 0], "load_average_at_end": [0.7, 0, 0],
               "cpu_time_stolen_share": stolen}
    target = {"target": "engine int4 vs ctranslate2 int8 per token", "workload": "b1 s16",
              "measured": 1.6, "comparison": ">=", "limit": 1.5, "met": True}
    accuracy = {"target": "engine int4 token agreement with pytorch fp32", "workload": "check set",
                "measured": 1.0, "comparison": ">=", "limit": 0.0, "met": True}
    model = {"name": "t5", "task": "text2text-generation", "random_weights": True, "rows": [],
             "cold_starts": [], "agreement": [], "targets": [target, accuracy], "notes": []}
    return {"machine": machine, "command": "onnx-engine bench", "models": [model]}


def test_a_run_with_stolen_cpu_time_says_so_and_judges_no_target():
    quiet, shared = markdown_table(_document(0.01)), markdown_table(_document(0.13))
    assert "1.0% of CPU time stolen by the hypervisor" in quiet
    assert "the machine was shared" not in quiet and "| met |" in quiet
    assert "13.0% of CPU time stolen" in shared and "the machine was shared" in shared
    assert "| b1 s16 | 1.6 | >= 1.5 | met (inconclusive: CPU time stolen) |" in shared
    assert "| check set | 1 | >= 0 | met |" in shared  # accuracy is not a timing
    assert "stolen" not in markdown_table(_document(None))  # not Linux: nothing claimed
