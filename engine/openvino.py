"""OpenVINO as the engine's second CPU runtime: bf16 where the CPU has it (``provider="openvino"``).

ONNX Runtime's CPU provider has no bf16 matmuls on x86, while OpenVINO runs an fp32 ONNX graph in
bf16 on CPUs with AMX or AVX512-BF16 (1.7-2x faster than fp32 measured here, on an AMD EPYC with
AVX512-BF16 and on an Intel Xeon with AMX). OpenVINO's own runtime (the ``openvino`` package)
reads the ONNX file directly. Its ONNX Runtime plugin (``onnxruntime-ep-openvino``) would keep one
runtime, but it offers its CPU device on Intel CPUs only (1.8.1 lists none on AMD), so it cannot
carry a bf16 variant to every CPU that has bf16.

OpenVINO picks its own inference precision: on a bf16-capable CPU its default is bf16, so an
"fp32" graph would silently run in bf16. The precision is therefore always set, and the precision
OpenVINO reports after compiling is checked: a CPU without bf16 compiles a bf16 request as f32,
which must be an error, not an fp32 run under a bf16 name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from engine.cpu import current_cpu
from engine.errors import CorruptArtifactError, ProviderError
from engine.manifest import GraphSpec
from engine.options import RuntimeOptions, required
from engine.session import OPENVINO, EngineSession, first_line, openvino_runtime
from engine.shape_buckets import MASK, ShapeBuckets, sequence_symbol

logger = logging.getLogger(__name__)


def bf16_unusable_reason() -> str | None:
    """Why OpenVINO cannot run bf16 on this machine, or None where it can.

    Both must hold: the CPU has bf16 instructions (AVX512-BF16 or AMX) and OpenVINO's CPU device
    reports the BF16 capability (it may not support a newer CPU's flags).
    """
    cpu = current_cpu()
    if not cpu.has_bf16:
        return f"this CPU has no bf16 instructions (AVX512-BF16 or AMX): {cpu.describe()}"
    unusable = openvino_cpu_unusable_reason()
    if unusable is not None:
        return unusable
    if "BF16" not in openvino_runtime().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return f"OpenVINO's CPU device does not offer BF16 on {cpu.model}"
    return None


def openvino_cpu_unusable_reason() -> str | None:
    """Why OpenVINO cannot run graphs on this CPU (it is not installed, or has no CPU device),
    or None where it can: all an int8-openvino variant made in f32 needs."""
    try:
        core = openvino_runtime().Core()
    except ProviderError as error:
        return str(error)
    if "CPU" not in core.available_devices:
        return "OpenVINO offers no CPU device here"
    return None


def compiled_model_cache(setting: str | None) -> Path | None:
    """The folder for OpenVINO's compiled-model cache (see ``RuntimeOptions.openvino_cache_dir``),
    created if need be; None where caching is off or the folder cannot be made (then every load
    compiles, as without a cache, and a warning says why).

    OpenVINO keys each blob by the model, the device and the compile settings, so a changed
    model or precision never loads a stale blob.
    """
    if setting == "":
        return None
    if setting is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "onnx-engine" / "openvino"
    else:
        folder = Path(setting).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        logger.warning("OpenVINO compiles without a cache: cannot create '%s' (%s).", folder,
                       error.strerror or error)
        return None
    return folder


class OpenVinoSession(EngineSession):
    """One graph compiled by OpenVINO for the CPU, behind the engine's session interface.

    The compiled model is shared; every call gets its own infer request (a few microseconds), so
    concurrent calls from the server's threads never share output buffers.
    """

    runtime_name = "OpenVINO"

    def __init__(
        self, model_path: Path, options: RuntimeOptions, output_names: tuple[str, ...],
        spec: GraphSpec | None = None,
    ) -> None:
        """Compile ``model_path``; ``output_names`` are its ONNX outputs, from the manifest.

        OpenVINO gives a graph output the name of the node that computes it as well, and may
        report either one, so the names the engine asks for come from the manifest. ``spec``
        (the manifest's signature of the graph) lets ``openvino_shape_buckets`` pad one-row
        calls to static shapes (:mod:`engine.shape_buckets`); without it every call is dynamic.
        """
        options = options.resolved()
        self.path = Path(model_path)
        self.options = options
        openvino = openvino_runtime()
        precision = required(options.openvino_precision, "openvino_precision")
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
        cache = compiled_model_cache(options.openvino_cache_dir)
        if cache is not None:
            config["CACHE_DIR"] = str(cache)
        self._core, self._config = openvino.Core(), config
        self._compiled = self._compile(None)
        compiled_precision = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        if compiled_precision != getattr(openvino.Type, precision):
            raise ProviderError(
                f"OpenVINO was asked for {precision} but compiled '{self.path.name}' for "
                f"{compiled_precision.get_type_name()} on this CPU ({current_cpu().describe()}). "
                "Use openvino_precision='f32' or provider='cpu'."
            )
        self.providers = [OPENVINO]
        self.input_names = tuple(port.get_any_name() for port in self._compiled.inputs)
        self.output_names = tuple(output_names)
        self._output_index = {
            name: index
            for index, port in enumerate(self._compiled.outputs) for name in port.get_names()
        }
        missing = [name for name in output_names if name not in self._output_index]
        if missing:
            raise CorruptArtifactError(
                f"'{self.path.name}' has no output(s) {missing} that the manifest lists; "
                "re-export the artifact."
            )
        symbol = sequence_symbol(spec)
        limit = options.openvino_shape_buckets or 0
        self._buckets = (ShapeBuckets(spec, symbol, limit, self._compile)
                         if spec is not None and symbol is not None and limit > 0 else None)

    def _compile(self, length: int | None) -> Any:
        """The graph compiled for one row of ``length`` tokens, or for any shape (None).

        Raises:
            CorruptArtifactError: OpenVINO cannot read or compile the graph.
        """
        try:
            if length is None:
                return self._core.compile_model(str(self.path), "CPU", self._config)
            model = self._core.read_model(str(self.path))
            model.reshape({port.get_any_name(): [1, length] for port in model.inputs})
            return self._core.compile_model(model, "CPU", self._config)
        except Exception as error:  # OpenVINO raises its own untyped errors
            raise CorruptArtifactError(
                f"OpenVINO cannot compile '{self.path}': {first_line(error)}. Re-export the "
                "artifact, or use provider='cpu'."
            ) from error

    @property
    def buckets(self) -> tuple[int, ...]:
        """The static sequence lengths compiled so far (empty without shape buckets)."""
        return self._buckets.buckets if self._buckets is not None else ()

    @property
    def raw(self) -> Any:
        """The compiled OpenVINO model, for benchmarks of the bare call."""
        return self._compiled

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: list[str] | None = None
    ) -> list[np.ndarray]:
        inputs = cast(dict[str, np.ndarray], self.select_inputs(feeds))
        names = output_names or self.output_names
        if self._buckets is None or not self._buckets.applies(inputs):
            return self._infer(self._compiled, inputs, names)
        length = int(inputs[MASK].shape[1])
        compiled = self._buckets.compiled(length)
        padded = self._buckets.padded(inputs, int(compiled.inputs[0].get_shape()[1]))
        values = self._infer(compiled, padded, names)
        return [self._buckets.cut(name, value, length) for name, value in zip(names, values)]

    def _infer(self, compiled: Any, inputs: Mapping[str, object],
               names: list[str] | tuple[str, ...]) -> list[np.ndarray]:
        try:
            results = compiled.create_infer_request().infer(inputs)
        except Exception as error:
            raise self.failure(error) from error
        values = results.to_tuple()
        return [values[self._output_index[name]] for name in names]

