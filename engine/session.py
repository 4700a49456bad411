"""ONNX Runtime sessions: provider choice, session options and error translation.

This is the only module that talks to ``onnxruntime`` directly. It guarantees two things users of
Optimum trip over: a requested CUDA provider is either really used or an error (ONNX Runtime itself
silently falls back to CPU), and ONNX Runtime's exceptions are turned into ours, naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.checks import check_choice
from engine.errors import (
    CorruptArtifactError,
    MissingDependencyError,
    OnnxEngineError,
    ProviderError,
)
from engine.options import (
    PROVIDER_CHOICES,
    CudaSettings,
    RuntimeOptions,
    SessionSettings,
    required,
)

try:
    import onnxruntime as ort
except ImportError as _error:  # pragma: no cover - exercised only in broken installs
    raise MissingDependencyError(
        "onnx-engine needs ONNX Runtime: pip install 'onnx-engine[cpu]' (or '[gpu]' for CUDA; "
        "never both onnxruntime and onnxruntime-gpu)."
    ) from _error

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINO"
_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
OPENVINO_INSTALL_HINT = "pip install 'onnx-engine[openvino]' (the openvino runtime)"


def cuda_provider_options(options: CudaSettings) -> dict[str, str]:
    """The CUDA execution provider's options (ORT takes strings); unset fields are left out."""
    settings = {
        "device_id": options.device_id,
        "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
        "arena_extend_strategy": options.arena_extend_strategy,
        "gpu_mem_limit": options.gpu_mem_limit,
    }
    return {key: str(value) for key, value in settings.items() if value is not None}


def openvino_runtime() -> Any:
    """The ``openvino`` module.

    Raises:
        ProviderError: OpenVINO is not installed (the message has the install hint).
    """
    try:
        import openvino
    except ImportError as error:
        raise ProviderError(
            f"Provider 'openvino' is not available: OpenVINO is not installed. "
            f"{OPENVINO_INSTALL_HINT}, or use provider='cpu'."
        ) from error
    return openvino


def available_providers() -> list[str]:
    """ONNX Runtime's providers, plus OpenVINO where it is installed."""
    providers = list(ort.get_available_providers())
    try:
        import openvino  # noqa: F401
    except ImportError:
        return providers
    return [OPENVINO, *providers]


def requested_providers(provider: str) -> list[str]:
    """The ORT provider list for one of ``PROVIDER_CHOICES``.

    Raises:
        InputError: the name is unknown.
        ProviderError: ``cuda`` is asked for but this ONNX Runtime build has no CUDA provider.
    """
    provider = check_choice("provider", provider, PROVIDER_CHOICES)
    available = available_providers()
    if provider == "cpu":
        return [CPU]
    if provider == "openvino":
        openvino_runtime()  # raises with the install hint where it is missing
        return [OPENVINO]
    if CUDA in available:
        return [CUDA, CPU]
    if provider == "cuda":
        raise ProviderError(
            f"Provider 'cuda' is not available. Available providers: {', '.join(available)}. "
            "Install onnxruntime-gpu (pip install 'onnx-engine[gpu]', without onnxruntime) on a "
            "machine with an NVIDIA GPU, or use provider='cpu'."
        )
    return [CPU]


def _session_options(options: SessionSettings) -> ort.SessionOptions:
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = _OPTIMIZATION_LEVELS[
        required(options.graph_optimization, "graph_optimization")]
    session_options.intra_op_num_threads = options.threads or 0
    session_options.enable_cpu_mem_arena = options.memory_arena
    spin = "1" if options.spin_wait else "0"
    session_options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    session_options.log_severity_level = 3
    return session_options


def _run_options(options: SessionSettings) -> ort.RunOptions | None:
    """Per-run settings: arena shrinkage (ORT refuses it for a session without an arena)."""
    if not (options.arena_shrinkage and options.memory_arena):
        return None
    run_options = ort.RunOptions()
    run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return run_options


class EngineSession:
    """An ``InferenceSession`` that knows its file, its real providers and how to fail clearly."""

    runtime_name = "ONNX Runtime"

    def __init__(
        self,
        model_path: Path,
        options: RuntimeOptions,
        providers: list[str] | None = None,
        model: bytes | None = None,
    ) -> None:
        """Open ``model_path``, or the serialized graph ``model`` (then the path only names it).

        ``providers`` is ``requested_providers(options.provider)``, passed in by callers that open
        several graphs so it is resolved once.
        """
        options = options.resolved()
        providers = providers or requested_providers(required(options.provider, "provider"))
        session_options = _session_options(options)
        if CUDA in providers and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels, when they are installed
        self.path = Path(model_path)
        self.options = options
        self._run_options = _run_options(options)
        by_name = [
            (name, cuda_provider_options(options)) if name == CUDA else name for name in providers
        ]
        try:
            self._session = ort.InferenceSession(
                model if model is not None else str(self.path),
                sess_options=session_options,
                providers=by_name,
            )
        except Exception as error:  # ORT raises its own untyped pybind errors
            raise CorruptArtifactError(
                f"ONNX Runtime cannot load '{self.path}': {first_line(error)}. The file is "
                "corrupt or not an ONNX model; re-export the artifact."
            ) from error
        self.providers: list[str] = list(self._session.get_providers())
        if CUDA in providers and CUDA not in self.providers:
            if options.provider == "cuda":
                raise ProviderError(
                    f"CUDA was requested but ONNX Runtime fell back to {self.providers} for "
                    f"'{self.path.name}' (no usable GPU, driver or CUDA libraries). Available "
                    f"providers: {', '.join(available_providers())}. Use provider='cpu'."
                )
            logger.warning("CUDA is not usable here; '%s' runs on CPU.", self.path.name)
        self.input_names = tuple(node.name for node in self._session.get_inputs())
        self.output_names = tuple(node.name for node in self._session.get_outputs())

    @property
    def on_cuda(self) -> bool:
        return self.providers[0] == CUDA

    @property
    def device(self) -> tuple[str, int]:
        """Where this session's tensors live, as IO binding names it: ``("cuda", id)`` or CPU."""
        if not self.on_cuda:
            return ("cpu", 0)
        return ("cuda", required(self.options.device_id, "device_id"))

    @property
    def raw(self) -> ort.InferenceSession:
        """The underlying ORT session, for IO binding and benchmarks of the bare call."""
        return self._session

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: list[str] | None = None
    ) -> list[np.ndarray]:
        """Run the graph, feeding only the inputs it declares (e.g. no token_type_ids to
        RoBERTa)."""
        inputs = self.select_inputs(feeds)
        try:
            return self._session.run(output_names, inputs, self._run_options)
        except Exception as error:
            raise self.failure(error) from error

    def select_inputs(self, feeds: Mapping[str, object]) -> dict[str, object]:
        """The feeds the graph declares, by name.

        Raises:
            OnnxEngineError: an input of the graph is not in ``feeds``.
        """
        inputs = {name: feeds[name] for name in self.input_names if name in feeds}
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise OnnxEngineError(f"'{self.path.name}' needs inputs {missing} that were not given.")
        return inputs

    def check_finite(self, logits: np.ndarray) -> None:
        """Refuse NaN/inf logits from this graph: an fp16 overflow must never pass as a score.

        Raises:
            OnnxEngineError: ``logits`` holds NaN or inf.
        """
        if not np.isfinite(logits).all():
            raise OnnxEngineError(
                f"'{self.path.name}' returned NaN/inf logits, so no result can be trusted. Load "
                "the artifact with variant='fp32' and report the input that caused it."
            )

    def failure(self, error: Exception) -> OnnxEngineError:
        """Our error for an exception ONNX Runtime raised while running this graph."""
        return OnnxEngineError(
            f"{self.runtime_name} failed running '{self.path.name}': {first_line(error)}"
        )


def first_line(error: Exception) -> str:
    """The first line of an error's message (runtimes append long native stack traces)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
