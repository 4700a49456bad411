"""The pieces of ``benchmarks/arm64_check.sh`` that run without emulation (the script itself
takes minutes and is run by hand; its results are in benchmarks/results/arm64-check.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.arm64_check import fake_cpuinfo, write_fake_cpu
from engine.cpu import parse_cpuinfo

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "arm64_check.sh"


def test_script_parses_and_prints_its_usage():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True,
                           check=True).stdout
    assert "debootstrap" in usage and "ARM64_CPUS" in usage
    refused = subprocess.run(["bash", str(SCRIPT), "--fast"], capture_output=True, text=True)
    assert refused.returncode == 2 and "unknown argument '--fast'" in refused.stderr


def test_fake_cpu_files_describe_an_aarch64_machine(tmp_path):
    written = write_fake_cpu(tmp_path, cores=3)
    assert sorted(path.relative_to(tmp_path).as_posix() for path in written) == [
        "proc/cpuinfo", "sys/devices/system/cpu/online", "sys/devices/system/cpu/possible",
        "sys/devices/system/cpu/present"]
    for name in ("possible", "present", "online"):
        assert (tmp_path / "sys/devices/system/cpu" / name).read_text() == "0-2\n"
    text = (tmp_path / "proc/cpuinfo").read_text()
    assert [line for line in text.splitlines() if line.startswith("processor")] == [
        "processor\t: 0", "processor\t: 1", "processor\t: 2"]
    assert text.count("CPU part\t: 0xd0c") == 3  # Neoverse N1, a part cpuinfo knows
    assert parse_cpuinfo(fake_cpuinfo(1, "max"), 1).flags == (
        "asimd", "asimddp", "bf16", "i8mm", "sve"
    )
    assert parse_cpuinfo(text, 3).flags == ("asimd", "asimddp")


def test_one_core_is_range_zero_and_no_cores_is_refused(tmp_path):
    write_fake_cpu(tmp_path, cores=1)
    assert (tmp_path / "sys/devices/system/cpu/possible").read_text() == "0\n"
    with pytest.raises(ValueError, match="cores must be >= 1"):
        fake_cpuinfo(0)
