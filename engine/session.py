"""ONNX Runtime sessions: provider choice, session options and error translation.

This is the only module that talks to ``onnxruntime`` directly. It guarantees two things users of
Optimum trip over: a requested CUDA provider is either really used or an error (ONNX Runtime itself
silently falls back to CPU), and ONNX Runtime's exceptions are turned into ours, naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from engine.errors import (
    CorruptArtifactError,
    InputError,
    MissingDependencyError,
    OnnxEngineError,
    ProviderError,
)
from engine.variants.choice import VARIANT_CHOICES

try:
    import onnxruntime as ort
except ImportError as _error:  # pragma: no cover - exercised only in broken installs
    raise MissingDependencyError(
        "onnx-engine needs ONNX Runtime: pip install 'onnx-engine[cpu]' (or '[gpu]' for CUDA; "
        "never both onnxruntime and onnxruntime-gpu)."
    ) from _error

logger = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "openvino")
CUDNN_CONV_ALGO_SEARCH_CHOICES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
ARENA_EXTEND_STRATEGY_CHOICES = ("kNextPowerOfTwo", "kSameAsRequested")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


IO_BINDING_CHOICES = ("auto", "on", "off")
OPENVINO = "OpenVINO"
# OpenVINO's inference precisions with provider='openvino' (see engine.openvino).
OPENVINO_PRECISIONS = ("f32", "bf16")


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions are created; one object instead of keyword arguments scattered over classes.

    Every field left at ``None`` means "this engine class's default": a user who sets only
    ``provider="cpu"`` keeps, say, ``Seq2SeqLM``'s thread spinning off. :meth:`over` layers the
    fields that are set over a class's defaults. Every value is checked here, when the object is
    made, so a bad option fails before any file is hashed or session created.

    Attributes:
        provider: ``auto`` (CUDA when it really works, else CPU), ``cpu``, ``cuda`` or
            ``openvino`` (OpenVINO's runtime on the CPU; see :mod:`engine.openvino`).
        threads: intra-op threads; unset lets ONNX Runtime use one per physical core, which
            measured fastest here (hyper-threads only contend for the same matmul units); at
            most :func:`max_threads` (4 per CPU).
        graph_optimization: ``all`` (default: ORT fuses at load), ``extended``, ``basic`` or
            ``disable`` (useful to compare with offline-optimized variants).
        memory_arena: keep ORT's CPU arena, which avoids re-allocating activations per call.
        arena_shrinkage: after each run, hand the CPU arena's memory beyond its first chunk back
            (ORT's ``memory.enable_memory_arena_shrinkage``), so one large batch does not keep
            its peak for the life of the process; a server's choice (see the README's serving
            section for what it costs). Off by default; ignored without ``memory_arena``.
        spin_wait: let idle intra-op threads spin. It saves a wake-up per call for one session,
            but a decode loop that alternates sessions pays ~10 ms for the other session's spinning
            threads; seq2seq turns it off for that reason.
        verify_hashes: check every file's sha256 against the manifest when it is first used.
        variant: which graphs to run: ``auto`` (the fastest variant that passed its accuracy
            gate and suits the provider in use), ``fp32``, ``fused``, ``int8`` (CPU only) or
            ``fp16`` (CUDA only); see :mod:`engine.variants.choice`.
        openvino_precision: OpenVINO's inference precision with ``provider='openvino'``:
            ``f32`` (default; its own default is bf16 on CPUs that have it). ``bf16`` is the
            precision of the gated ``bf16`` variant and is refused with any other variant.
        openvino_cache_dir: where OpenVINO keeps compiled models, so a later load imports the
            compiled blob instead of compiling again (cold start); unset: the user's cache
            folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``onnx-engine/openvino``); ``""``
            turns caching off.
        io_binding: run the seq2seq decoder through ORT IO binding so the KV cache stays on the
            device between steps: ``auto`` (on CUDA only), ``on`` (also on CPU, where it only
            adds bookkeeping; for tests) or ``off``; see :mod:`engine.io_binding`.
        device_id: the GPU (CUDA ordinal, as ``nvidia-smi`` numbers them unless
            ``CUDA_VISIBLE_DEVICES`` renumbers) every CUDA session and bound tensor uses; pins a
            model to one card of a multi-GPU host (default 0). Ignored on CPU.
        cudnn_conv_algo_search: how the CUDA provider picks cuDNN convolution algorithms:
            ``EXHAUSTIVE`` (ORT's default: benchmarks every algorithm once per input shape, so
            the first call at each new shape is slow), ``HEURISTIC`` (cuDNN's guess, no
            first-call cost: the better choice when shapes vary call to call) or ``DEFAULT``.
            Only convolutions use it; unset keeps ORT's default.
        arena_extend_strategy: how the CUDA memory arena grows: ``kNextPowerOfTwo`` (ORT's
            default: fewer, larger allocations) or ``kSameAsRequested`` (no rounding up: less
            memory held when several models share a card). Unset keeps ORT's default.
        gpu_mem_limit: cap in bytes on the CUDA arena of each session (unset: no cap), so one
            model cannot take the whole card from the others on it.

    Raises:
        InputError: a field has the wrong type or an unknown value (the message names it and
            the accepted values).
    """

    provider: str | None = None
    threads: int | None = None
    graph_optimization: str | None = None
    memory_arena: bool | None = None
    arena_shrinkage: bool | None = None
    spin_wait: bool | None = None
    verify_hashes: bool | None = None
    variant: str | None = None
    io_binding: str | None = None
    openvino_precision: str | None = None
    openvino_cache_dir: str | None = None
    device_id: int | None = None
    cudnn_conv_algo_search: str | None = None
    arena_extend_strategy: str | None = None
    gpu_mem_limit: int | None = None

    def __post_init__(self) -> None:
        if self.provider is not None:
            object.__setattr__(self, "provider", _choice("provider", self.provider, PROVIDER_CHOICES))
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise InputError(
                f"threads must be a positive integer (or None for one per core), got {self.threads!r}."
            )
        if self.threads is not None and self.threads > max_threads():
            raise InputError(
                f"threads={self.threads} is more than {max_threads()}, 4 per CPU of this machine "
                f"({os.cpu_count()}): ONNX Runtime starts them all at load and they only contend "
                "for the cores. Leave threads unset (one per core) or give at most that many."
            )
        _choice("graph_optimization", self.graph_optimization, tuple(_OPTIMIZATION_LEVELS))
        variant = _choice("variant", self.variant, VARIANT_CHOICES)
        _choice("io_binding", self.io_binding, IO_BINDING_CHOICES)
        precision = _choice("openvino_precision", self.openvino_precision, OPENVINO_PRECISIONS)
        object.__setattr__(self, "openvino_precision", precision)
        # bf16 is a variant with an accuracy gate; as a bare precision it would run any other
        # variant in bf16 under that variant's name (fp32 measured |Δlogit| 1.8e-2).
        if precision == "bf16" and variant not in (None, "bf16"):
            raise InputError(
                f"openvino_precision='bf16' belongs to the gated 'bf16' variant, not to "
                f"variant={variant!r}: ask for variant='bf16' (made by 'onnx-engine optimize "
                "ARTIFACT --bf16'; 'auto' picks it where it passed its gate and is fastest), or "
                "leave openvino_precision unset."
            )
        if self.openvino_cache_dir is not None and not isinstance(self.openvino_cache_dir, str):
            raise InputError(
                f"openvino_cache_dir must be a folder path (or '' for no cache), got "
                f"{self.openvino_cache_dir!r}."
            )
        for name in ("memory_arena", "arena_shrinkage", "spin_wait", "verify_hashes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InputError(f"{name} must be True or False, got {value!r}.")
        _check_cuda_options(self)

    def over(self, defaults: RuntimeOptions) -> RuntimeOptions:
        """These options layered over ``defaults``: every field set here wins, the rest is kept."""
        return replace(defaults, **{key: value for key, value in asdict(self).items() if value is not None})

    def with_overrides(self, **overrides: object) -> RuntimeOptions:
        """A copy with the given fields replaced; ``None`` values leave a field as it is."""
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    def resolved(self) -> RuntimeOptions:
        """Every field set: these options over the engine-wide defaults."""
        return self.over(ENGINE_DEFAULTS)


def max_threads() -> int:
    """The most intra-op threads a session may ask for: 4 per CPU that ``os.cpu_count`` sees.

    Threads beyond the cores only contend for them (one per physical core measured fastest), yet
    ONNX Runtime creates every one at load: 4096 took 92 s to load a tiny model. Four per CPU
    keeps room for hosts whose count understates the cores a deployment may get (a container
    limited now, resized later) while refusing counts no machine this code sees can use.
    """
    return 4 * (os.cpu_count() or 1)


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str | None:
    """``value`` lower-cased if it is one of ``choices`` (``None`` passes: unset).

    Raises:
        InputError: not a string, or not one of ``choices``.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise InputError(f"Unknown {name} {value!r}. Choose one of: {', '.join(choices)}.")


def _check_cuda_options(options: RuntimeOptions) -> None:
    """Check the CUDA provider fields (unset passes); the CUDA names are case-sensitive in ORT.

    Raises:
        InputError: a field has the wrong type or an unknown value.
    """
    if options.device_id is not None and not _is_count(options.device_id):
        raise InputError(
            f"device_id must be a GPU ordinal (an integer >= 0), got {options.device_id!r}."
        )
    for name, choices in (("cudnn_conv_algo_search", CUDNN_CONV_ALGO_SEARCH_CHOICES),
                          ("arena_extend_strategy", ARENA_EXTEND_STRATEGY_CHOICES)):
        value = getattr(options, name)
        if value is not None and value not in choices:
            raise InputError(f"Unknown {name} {value!r}. Choose one of: {', '.join(choices)}.")
    limit = options.gpu_mem_limit
    if limit is not None and not (_is_count(limit) and limit > 0):
        raise InputError(f"gpu_mem_limit must be a positive number of bytes, got {limit!r}.")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def cuda_provider_options(options: RuntimeOptions) -> dict[str, str]:
    """The CUDA execution provider's options (ORT takes strings); unset fields are left out."""
    settings = {
        "device_id": options.device_id,
        "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
        "arena_extend_strategy": options.arena_extend_strategy,
        "gpu_mem_limit": options.gpu_mem_limit,
    }
    return {key: str(value) for key, value in settings.items() if value is not None}


ENGINE_DEFAULTS = RuntimeOptions(
    provider="auto",
    graph_optimization="all",
    memory_arena=True,
    arena_shrinkage=False,
    spin_wait=True,
    verify_hashes=True,
    variant="auto",
    io_binding="auto",
    openvino_precision="f32",
    device_id=0,
)


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
    provider = _choice("provider", provider, PROVIDER_CHOICES)
    available = available_providers()
    if provider == "cpu":
        return [CPU]
    if provider == "openvino":
        from engine.openvino import openvino_runtime

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


def _session_options(options: RuntimeOptions) -> ort.SessionOptions:
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = _OPTIMIZATION_LEVELS[options.graph_optimization]
    session_options.intra_op_num_threads = options.threads or 0
    session_options.enable_cpu_mem_arena = options.memory_arena
    spin = "1" if options.spin_wait else "0"
    session_options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    session_options.log_severity_level = 3
    return session_options


def _run_options(options: RuntimeOptions) -> ort.RunOptions | None:
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
        providers = providers or requested_providers(options.provider)
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
        return ("cuda", self.options.device_id) if self.on_cuda else ("cpu", 0)

    @property
    def raw(self) -> ort.InferenceSession:
        """The underlying ORT session, for IO binding and benchmarks of the bare call."""
        return self._session

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: list[str] | None = None
    ) -> list[np.ndarray]:
        """Run the graph, feeding only the inputs it declares (e.g. no token_type_ids to RoBERTa)."""
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
