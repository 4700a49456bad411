"""Whether CUDA really works here: one tiny session on the CUDA provider, checked, not assumed.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` on any machine and silently falls back to CPU
when there is no GPU, driver or CUDA library, so the only reliable test is to open a session and
see which provider it got. The test suite (marker ``cuda``) and ``benchmarks/gpu_check.sh`` ask
here.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import OnnxEngineError
from engine.options import RuntimeOptions
from engine.row_gather import ELEMENT_TYPES, gather_rows_model
from engine.session import CUDA, EngineSession, available_providers


def cuda_unusable_reason(device_id: int = 0) -> str | None:
    """None when a CUDA session really runs on GPU ``device_id``; otherwise why not, in one line."""
    if CUDA not in available_providers():
        return (
            f"this onnxruntime has no {CUDA} (available: {', '.join(available_providers())}); "
            "install onnxruntime-gpu instead of onnxruntime"
        )
    graph = gather_rows_model([(ELEMENT_TYPES["tensor(float)"], 1)])
    options = RuntimeOptions(provider="cuda", device_id=device_id)
    try:
        EngineSession(Path("cuda-probe"), options, model=graph)
    except OnnxEngineError as error:
        return str(error).splitlines()[0]
    return None
