"""What a load is asked for, split by concern: each concern a frozen dataclass that checks itself.

``RuntimeOptions`` is the one object users pass (``engine.load(path, options=...)``); it is made
of four concerns, each validated once, in its own ``__post_init__``:

- :class:`SessionSettings`: ONNX Runtime's session settings, for every provider;
- :class:`CudaSettings`: the CUDA provider's settings and IO binding of the decoder;
- :class:`OpenVinoSettings`: OpenVINO's precision and compiled-model cache;
- :class:`LoadChoice`: what to load: the variant, and whether file hashes are checked.

Code that needs one concern takes that class (a ``RuntimeOptions`` is each of them), so a session
never sees the variant choice and the variant choice never sees CUDA's arena. Every field left at
``None`` means "this engine class's default"; :meth:`RuntimeOptions.over` layers set fields over
a class's defaults. This module imports no runtime: ``engine.RuntimeOptions`` stays light.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from engine.checks import check_choice, check_flag, check_int
from engine.errors import InputError, OnnxEngineError
from engine.variants.records import BF16, INT8_OPENVINO, VARIANT_CHOICES

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "openvino")
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
CUDNN_CONV_ALGO_SEARCH_CHOICES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
ARENA_EXTEND_STRATEGY_CHOICES = ("kNextPowerOfTwo", "kSameAsRequested")
IO_BINDING_CHOICES = ("auto", "on", "off")
# OpenVINO's inference precisions with provider='openvino' (see engine.openvino).
OPENVINO_PRECISIONS = ("f32", "bf16")


def max_threads() -> int:
    """The most intra-op threads a session may ask for: 4 per CPU that ``os.cpu_count`` sees.

    Threads beyond the cores only contend for them (one per physical core measured fastest), yet
    ONNX Runtime creates every one at load: 4096 took 92 s to load a tiny model. Four per CPU
    keeps room for hosts whose count understates the cores a deployment may get (a container
    limited now, resized later) while refusing counts no machine this code sees can use.
    """
    return 4 * (os.cpu_count() or 1)


T = TypeVar("T")


def required(value: T | None, name: str) -> T:
    """A field that options resolved over the engine's defaults always have (``provider``,
    ``variant``, ``io_binding``, ...: every field ``ENGINE_DEFAULTS`` sets).

    Raises:
        OnnxEngineError: it is unset: the options were not resolved (a bug of the caller).
    """
    if value is None:
        raise OnnxEngineError(
            f"RuntimeOptions.{name} is unset here: resolve the options over the defaults first "
            "(RuntimeOptions.resolved, or the engine class's resolve_options)."
        )
    return value


def _choose(settings: object, name: str, choices: tuple[str, ...], fold_case: bool = True) -> None:
    """Check the field ``name`` of a frozen settings object against ``choices`` (unset passes)
    and store the value as the choice spells it."""
    value = getattr(settings, name)
    if value is not None:
        object.__setattr__(settings, name, check_choice(name, value, choices, fold_case))


def _flags(settings: object, *names: str) -> None:
    """Check that each field ``names`` of a settings object is True, False or unset."""
    for name in names:
        if getattr(settings, name) is not None:
            check_flag(name, getattr(settings, name))


@dataclass(frozen=True)
class SessionSettings:
    """ONNX Runtime's session settings (see :class:`RuntimeOptions` for each field)."""

    provider: str | None = None
    threads: int | None = None
    graph_optimization: str | None = None
    memory_arena: bool | None = None
    arena_shrinkage: bool | None = None
    spin_wait: bool | None = None

    def __post_init__(self) -> None:
        _choose(self, "provider", PROVIDER_CHOICES)
        if self.threads is not None:
            threads = check_int("threads", self.threads,
                                what="a positive integer (or None for one per core)")
            if threads > max_threads():
                raise InputError(
                    f"threads={threads} is more than {max_threads()}, 4 per CPU of this machine "
                    f"({os.cpu_count()}): ONNX Runtime starts them all at load and they only "
                    "contend for the cores. Leave threads unset (one per core) or give at most "
                    "that many."
                )
        _choose(self, "graph_optimization", GRAPH_OPTIMIZATIONS)
        _flags(self, "memory_arena", "arena_shrinkage", "spin_wait")


@dataclass(frozen=True)
class CudaSettings:
    """The CUDA provider's settings, and IO binding of the seq2seq decoder (see
    :class:`RuntimeOptions`); the CUDA names are case-sensitive in ONNX Runtime."""

    device_id: int | None = None
    cudnn_conv_algo_search: str | None = None
    arena_extend_strategy: str | None = None
    gpu_mem_limit: int | None = None
    io_binding: str | None = None

    def __post_init__(self) -> None:
        if self.device_id is not None:
            check_int("device_id", self.device_id, minimum=0,
                      what="a GPU ordinal (an integer >= 0)")
        _choose(self, "cudnn_conv_algo_search", CUDNN_CONV_ALGO_SEARCH_CHOICES, fold_case=False)
        _choose(self, "arena_extend_strategy", ARENA_EXTEND_STRATEGY_CHOICES, fold_case=False)
        if self.gpu_mem_limit is not None:
            check_int("gpu_mem_limit", self.gpu_mem_limit, what="a positive number of bytes")
        _choose(self, "io_binding", IO_BINDING_CHOICES)


@dataclass(frozen=True)
class OpenVinoSettings:
    """OpenVINO's settings with ``provider='openvino'`` (see :class:`RuntimeOptions`)."""

    openvino_precision: str | None = None
    openvino_cache_dir: str | None = None
    openvino_shape_buckets: int | None = None

    def __post_init__(self) -> None:
        _choose(self, "openvino_precision", OPENVINO_PRECISIONS)
        if self.openvino_shape_buckets is not None:
            check_int("openvino_shape_buckets", self.openvino_shape_buckets, minimum=0,
                      what="a number of compiled buckets (0: off)")
        if self.openvino_cache_dir is not None and not isinstance(self.openvino_cache_dir, str):
            raise InputError(
                f"openvino_cache_dir must be a folder path (or '' for no cache), got "
                f"{self.openvino_cache_dir!r}."
            )


@dataclass(frozen=True)
class LoadChoice:
    """What a load opens: the variant, and whether files are hash-checked."""

    variant: str | None = None
    verify_hashes: bool | None = None

    def __post_init__(self) -> None:
        _choose(self, "variant", VARIANT_CHOICES)
        _flags(self, "verify_hashes")


CONCERNS = (SessionSettings, CudaSettings, OpenVinoSettings, LoadChoice)


@dataclass(frozen=True)
class RuntimeOptions(LoadChoice, OpenVinoSettings, CudaSettings, SessionSettings):
    """How an artifact is loaded and run; one object instead of keyword arguments everywhere.

    Every field left at ``None`` means "this engine class's default": a user who sets only
    ``provider="cpu"`` keeps, say, ``Seq2SeqLM``'s thread spinning off. :meth:`over` layers the
    fields that are set over a class's defaults. Every value is checked when the object is made
    (by the concern it belongs to), so a bad option fails before any file is hashed or session
    created.

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
            precision of the gated ``bf16`` variant and is refused with any other variant but
            ``int8-openvino``, which always runs in the precision it was gated in (its record's).
        openvino_cache_dir: where OpenVINO keeps compiled models, so a later load imports the
            compiled blob instead of compiling again (cold start); unset: the user's cache
            folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``onnx-engine/openvino``); ``""``
            turns caching off.
        openvino_shape_buckets: with OpenVINO, run one-row calls padded to the next power of
            two length (at least 8) on a model compiled for that static shape, compiled on
            first use and cached (the compiled-model cache keeps it for later loads), at most
            this many at once (each holds its own weights, 35-60 MB for MiniLM); 0 (default)
            runs every call dynamic. Measured up to 24% faster one-row latency net of padding
            (break-even at 40 tokens in a 64 bucket);
            batches stay dynamic (padding them costs more than static shapes save).
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

    def __post_init__(self) -> None:
        for concern in CONCERNS:
            concern.__post_init__(self)
        # bf16 is a variant with an accuracy gate; as a bare precision it would run any other
        # variant in bf16 under that variant's name (fp32 measured |Δlogit| 1.8e-2).
        if self.openvino_precision == BF16 and self.variant not in (None, BF16, INT8_OPENVINO):
            raise InputError(
                f"openvino_precision='bf16' belongs to the gated 'bf16' variant, not to "
                f"variant={self.variant!r}: ask for variant='bf16' (made by 'onnx-engine "
                "optimize ARTIFACT --bf16'; 'auto' picks it where it passed its gate and is "
                "fastest), or leave openvino_precision unset."
            )

    def over(self, defaults: RuntimeOptions) -> RuntimeOptions:
        """These options layered over ``defaults``: every field set here wins, the rest is kept."""
        given: dict[str, Any] = {key: value for key, value in asdict(self).items()
                                 if value is not None}
        return replace(defaults, **given)

    def with_overrides(self, **overrides: object) -> RuntimeOptions:
        """A copy with the given fields replaced; ``None`` values leave a field as it is."""
        given: dict[str, Any] = {key: value for key, value in overrides.items()
                                 if value is not None}
        return replace(self, **given)

    def resolved(self) -> RuntimeOptions:
        """Every field set: these options over the engine-wide defaults."""
        return self.over(ENGINE_DEFAULTS)

    def layered(self, defaults: RuntimeOptions, **overrides: object) -> RuntimeOptions:
        """The keyword ``overrides`` (``None``: not given) over these options over ``defaults``:
        what a load runs with."""
        return self.with_overrides(**overrides).over(defaults)


def options_or_default(options: object) -> RuntimeOptions:
    """``options`` if it is a :class:`RuntimeOptions`, a fresh one for ``None``.

    Raises:
        InputError: anything else (a dict of settings, say).
    """
    if options is None:
        return RuntimeOptions()
    if not isinstance(options, RuntimeOptions):
        raise InputError(
            f"options must be an engine.RuntimeOptions, got {type(options).__name__}."
        )
    return options


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
