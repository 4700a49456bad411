"""What kind of machine a variant's accuracy was seen on: architecture, ISA class, runtimes.

int8 (and bf16/fp16) kernels differ by instruction set: the same dynamic-int8 encoder gave
outputs 0.047 apart on x86-64 and aarch64 where fp32 stayed within 3e-6. So an accuracy gate
measured on one kind of machine says nothing certain about another, and verdicts are keyed by
this identity (``engine.verification.verdicts``). The ISA class is the sorted list of
``engine.cpu.ISA_FLAGS`` present (the flags that pick matmul kernels); unknown flags never match
anything.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.cpu import CpuInfo, current_cpu


@dataclass(frozen=True)
class MachineKind:
    """Architecture, ISA flag class and runtime versions of one machine."""

    architecture: str
    isa: tuple[str, ...] | None
    onnxruntime: str
    openvino: str | None = None

    @property
    def key(self) -> str:
        """The verdicts file's key of this machine kind."""
        isa = "+".join(self.isa) if self.isa is not None else "isa-unknown"
        return (f"{self.architecture}/{isa or 'no-listed-isa'}/onnxruntime-{self.onnxruntime}/"
                f"openvino-{self.openvino or 'none'}")

    def same_isa_as(self, cpu: CpuInfo | None) -> bool:
        """Whether ``cpu`` (as a manifest records it) has this ISA class; unknown never does."""
        return cpu is not None and self.isa is not None and cpu.flags == self.isa

    def describe(self) -> str:
        flags = " ".join(self.isa) if self.isa is not None else "flags unknown"
        listed = flags or "no listed ISA flags"
        return f"{self.architecture} ({listed}; onnxruntime {self.onnxruntime})"

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture,
                "isa": list(self.isa) if self.isa is not None else None,
                "onnxruntime": self.onnxruntime, "openvino": self.openvino}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineKind:
        isa = data.get("isa")
        return cls(str(data.get("architecture", "")), tuple(isa) if isa is not None else None,
                   str(data.get("onnxruntime", "")), data.get("openvino"))


def current_machine() -> MachineKind:
    """This machine's kind (OpenVINO's version from its package metadata: no import)."""
    import onnxruntime

    try:
        openvino = importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        openvino = None
    return MachineKind(platform.machine() or "unknown", current_cpu().flags,
                       onnxruntime.__version__, openvino)
