"""Which CPU this is: model, the instruction sets that decide kernel speed, and core count.

Variant timings only rank variants on the CPU they were taken on: int8 runs 9x fp32 on a Xeon
with AMX and ~3x on an EPYC without it, and bf16 only pays where AVX512-BF16 or AMX exist. So
every timing records the CPU, and ``auto`` trusts timings only from the CPU it runs on. Standard
library only; where ``/proc/cpuinfo`` is absent (macOS, Windows) the model comes from
``platform`` and the flags are unknown, which never matches a recorded CPU, so timings are
re-taken rather than trusted.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# The flags that change which kernels ONNX Runtime, OpenVINO and PyTorch pick for matmuls.
ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "asimddp", "sve", "bf16", "i8mm",
)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    """The facts about a CPU that decide which variant is fastest on it.

    ``flags`` are the ``ISA_FLAGS`` present, sorted; ``None`` when they could not be read.
    ``cores`` counts the CPUs this process may run on.
    """

    model: str
    flags: tuple[str, ...] | None
    cores: int

    @property
    def has_bf16(self) -> bool:
        """True where bf16 matmuls run natively (AVX512-BF16 or AMX)."""
        flags = self.flags or ()
        return any(flag in flags for flag in BF16_FLAGS)

    def same_as(self, other: CpuInfo | None) -> bool:
        """Whether timings taken on ``other`` rank variants for this CPU; unknown flags never do."""
        return (
            other is not None
            and self.flags is not None
            and (self.model, self.flags, self.cores) == (other.model, other.flags, other.cores)
        )

    def describe(self) -> str:
        flags = " ".join(self.flags) if self.flags is not None else "flags unknown"
        return f"{self.model} ({self.cores} cores; {flags or 'no listed ISA flags'})"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "flags": list(self.flags) if self.flags is not None else None,
                "cores": self.cores}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CpuInfo:
        flags = data.get("flags")
        return cls(str(data.get("model", "")), tuple(flags) if flags is not None else None,
                   int(data.get("cores", 0)))


def parse_cpuinfo(text: str, cores: int) -> CpuInfo:
    """A ``CpuInfo`` from the text of ``/proc/cpuinfo`` (x86 ``flags`` or Arm ``Features``)."""
    model, present = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not present:
            present = set(value.split())
    flags = tuple(sorted(flag for flag in ISA_FLAGS if flag in present))
    return CpuInfo(model or platform.machine() or "unknown", flags, cores)


def current_cpu() -> CpuInfo:
    """This machine's CPU; flags are ``None`` where ``/proc/cpuinfo`` cannot be read."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        return parse_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"), cores or 1)
    except OSError:
        model = platform.processor() or platform.machine() or "unknown"
        return CpuInfo(model, None, cores or 1)
