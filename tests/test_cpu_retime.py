"""CPU facts recorded with variant timings; `auto` re-times on a CPU it was not timed on."""

from __future__ import annotations

import logging
import re
import shutil

import pytest
from helpers import timed_elsewhere

import engine.cpu
from engine import Classifier
from engine.cpu import CpuInfo, current_cpu, parse_cpuinfo
from engine.manifest import ArtifactManifest
from engine.variants.choice import variant_records
from engine.variants.records import FP32, INT8, TARGET_CPU
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.cli import main

XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd aes sha2 asimddp sve i8mm bf16\n"


def test_cpuinfo_gives_model_isa_flags_and_bf16_support():
    xeon = parse_cpuinfo(XEON, cores=2)
    assert xeon.model == "Intel(R) Xeon(R) Platinum 8480+" and xeon.cores == 2
    assert xeon.flags == ("amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16",
                          "avx512_vnni", "avx512bw", "avx512f", "fma")
    assert xeon.has_bf16 and xeon.same_as(CpuInfo.from_dict(xeon.to_dict()))
    assert not xeon.same_as(parse_cpuinfo(XEON, cores=4))  # thread count changes the ranking
    arm = parse_cpuinfo(GRAVITON, cores=8)
    assert arm.flags == ("asimd", "asimddp", "bf16", "i8mm", "sve") and not arm.has_bf16


def test_without_proc_cpuinfo_flags_are_unknown_and_never_match(monkeypatch, tmp_path):
    monkeypatch.setattr(engine.cpu, "CPUINFO", tmp_path / "absent")
    here = current_cpu()
    assert here.flags is None and here.model and here.cores >= 1
    assert "flags unknown" in here.describe() and not here.same_as(here)


@pytest.fixture(scope="module")
def timed_artifact(classifier_factory, tmp_path_factory):
    """A tiny DistilBERT with a passing int8 variant, both timed on this CPU."""
    artifact = tmp_path_factory.mktemp("retime") / "artifact"
    shutil.copytree(classifier_factory("distilbert-2").artifact, artifact)
    optimize_artifact(OptimizeSettings(artifact=artifact, variants=(INT8,), timing_runs=1,
                                       quiet=True))
    return artifact


def _recorded_elsewhere(artifact, copy_artifact):
    moved = copy_artifact(artifact)
    timed_elsewhere(moved)
    return moved


def test_timings_record_this_cpu_and_auto_trusts_them_here(timed_artifact, caplog):
    records = variant_records(ArtifactManifest.read(timed_artifact))
    assert records[INT8].passed
    for name in (FP32, INT8):
        assert CpuInfo.from_dict(records[name].speeds[TARGET_CPU].cpu) == current_cpu()
    with caplog.at_level(logging.WARNING):
        Classifier.load(timed_artifact, provider="cpu")
    assert "re-timed" not in caplog.text.lower()


def test_auto_re_times_on_another_cpu_and_says_what_it_picked(
    timed_artifact, copy_artifact, caplog
):
    moved = _recorded_elsewhere(timed_artifact, copy_artifact)
    with caplog.at_level(logging.WARNING):
        classifier = Classifier.load(moved, provider="cpu")
    message = caplog.text
    assert "Imaginary CPU 9000" in message and current_cpu().model in message
    picked = re.search(r"picked '(\w+)'", message).group(1)
    assert classifier.variant == picked and picked in (FP32, INT8)
    assert "fp32" in message and "int8" in message and "--retime" in message
    # An explicit variant is never re-timed.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert Classifier.load(moved, provider="cpu", variant=INT8).variant == INT8
    assert "Re-timed" not in caplog.text


def test_optimize_retime_records_this_cpu_so_loads_skip_timing(
    timed_artifact, copy_artifact, caplog, capsys
):
    moved = _recorded_elsewhere(timed_artifact, copy_artifact)
    assert main(["optimize", str(moved), "--retime", "--timing-runs", "1", "-q"]) == 0
    assert "re-times them at load" in capsys.readouterr().out
    records = variant_records(ArtifactManifest.read(moved))
    assert all(records[name].speeds[TARGET_CPU].taken_on(current_cpu()) for name in (FP32, INT8))
    with caplog.at_level(logging.WARNING):
        Classifier.load(moved, provider="cpu")
    assert "Re-timed" not in caplog.text
