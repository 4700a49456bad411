"""The machine a benchmark ran on, recorded in its JSON so figures are never quoted without it."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from engine.cpu import current_cpu

# Distributions whose versions decide the figures; read from metadata, so nothing is imported.
_PACKAGES = (
    "onnx-engine", "onnxruntime", "onnxruntime-gpu", "numpy", "tokenizers", "onnx", "torch",
    "transformers", "optimum", "optimum-onnx", "openvino",
)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def physical_cores() -> int:
    """Physical cores: the thread count every contender gets (hyper-threads share matmul units)."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
        if count:
            return int(count)
    except ImportError:
        pass
    return os.cpu_count() or 1


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages, to the OS's two decimals (None where it has none)."""
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_time_counters(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """``(stolen, total)`` CPU time of all CPUs since boot, in the kernel's ticks (Linux; None
    elsewhere). Stolen is time the hypervisor ran other guests while this one had work: on a
    shared VM it slows every contender, and those synchronising threads often (OpenMP's
    barriers: CTranslate2) far more than the rest, so ratios of a run with steal mislead."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user already)
    ticks = [int(value) for value in fields[1:9]]
    return ticks[7], sum(ticks)


def stolen_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen between two :func:`cpu_time_counters` readings."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return round((end[0] - start[0]) / (end[1] - start[1]), 4)


def machine_info(threads: int, environment: dict[str, str]) -> dict[str, Any]:
    """CPU, cores, memory, OS, versions, the threads used and the environment that matters.

    The load average is recorded because this benchmark often runs on shared machines: a load
    above the core count means other processes competed for the CPU during the run.
    """
    cpu = current_cpu()
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        # The instruction sets that decide which kernels run (VNNI / AMX int8, AVX512-BF16 / AMX
        # bf16): figures from CPUs with different flags are not comparable.
        "cpu_isa_flags": list(cpu.flags) if cpu.flags is not None else None,
        "cpu_has_bf16": cpu.has_bf16,
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "threads_used": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "environment": dict(environment),
        "load_average_at_start": load_average(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        info["memory_gb"] = None
    return info
