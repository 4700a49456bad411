"""How much each matmul, quantized alone, moves a model's scores: the order int8 search keeps them.

Quantizing a 22M-parameter graph once per matmul takes seconds each with ONNX Runtime's tools
(~5 s here, 48 matmuls in MiniLM). Instead one fp32 graph emulates int8 on every matmul behind a
switch: each matmul input goes through ``x + s * (int8(x) - x)``, where ``s`` is a scalar graph
input and ``int8(x)`` is the round trip through 8 bits that the quantizer uses (activations:
per-tensor uint8, by ``DynamicQuantizeLinear`` or with calibrated ranges; weights: symmetric
int8, per output channel or per tensor, precomputed). One session then measures every matmul by
turning its switch alone on. The kernels' int32 accumulation is exact, so the emulation differs
from the quantized graph only by fp32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.dependencies import require

SWITCH_PREFIX = "int8_switch_"


def matmul_sensitivity(
    source: Path,
    nodes: Sequence[str],
    feeds: Sequence[Mapping[str, np.ndarray]],
    scores: Callable[[np.ndarray], np.ndarray],
    per_channel: bool = True,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> list[tuple[str, float]]:
    """Each of ``nodes`` with the mean over texts of the largest |Δscore| it causes alone.

    ``ranges`` (tensor -> calibrated min, max) emulates static activation quantization; without
    it activations are quantized per call (dynamic). ``feeds`` are batches; the first graph
    output is taken as logits ``[batch, labels]`` and turned into scores by ``scores``. Sorted
    most sensitive first.

    Raises:
        MissingDependencyError: onnx is not installed.
    """
    ort = require("onnxruntime")
    model, switches = _switched_graph(source, nodes, per_channel, ranges)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    output = session.get_outputs()[0].name
    off = {name: np.zeros((), np.float32) for name in switches.values()}

    def run(switch: str | None) -> list[np.ndarray]:
        on = {switch: np.ones((), np.float32)} if switch else {}
        return [scores(session.run([output], {**feed, **off, **on})[0]) for feed in feeds]

    expected = run(None)
    errors = []
    for node, switch in switches.items():
        moved = [np.max(np.abs(got - want), axis=-1) for got, want in zip(run(switch), expected)]
        errors.append((node, float(np.mean(np.concatenate(moved)))))
    return sorted(errors, key=lambda item: -item[1])


def _switched_graph(
    source: Path,
    nodes: Sequence[str],
    per_channel: bool,
    ranges: Mapping[str, tuple[float, float]] | None,
) -> tuple[Any, dict[str, str]]:
    """The fp32 model with a switched int8 emulation on each input of each of ``nodes``."""
    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    model = onnx.load(str(source))
    weights = {init.name: init for init in model.graph.initializer}
    wanted = set(nodes)
    switches: dict[str, str] = {}
    ordered = []
    for node in list(model.graph.node):
        if node.name not in wanted:
            ordered.append(node)
            continue
        added = []
        switch = f"{SWITCH_PREFIX}{len(switches)}"
        switches[node.name] = switch
        model.graph.input.append(helper.make_tensor_value_info(switch, onnx.TensorProto.FLOAT, []))
        for index, name in enumerate(node.input):
            tag = f"{switch}_{index}"
            if name in weights:
                array = numpy_helper.to_array(weights[name]).astype(np.float32)
                delta = _weight_round_trip(array, per_channel) - array
                model.graph.initializer.append(numpy_helper.from_array(delta, f"{tag}_delta"))
                added += [
                    helper.make_node("Mul", [switch, f"{tag}_delta"], [f"{tag}_step"]),
                    helper.make_node("Add", [name, f"{tag}_step"], [f"{tag}_out"]),
                ]
            else:
                added += _activation_round_trip(helper, numpy_helper, name, tag, switch, ranges)
            node.input[index] = f"{tag}_out"
        # Right before the matmul: ONNX wants nodes in topological order, and the emulation
        # reads only what the matmul itself reads.
        ordered += [*added, node]
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return model, switches


def _weight_round_trip(weight: np.ndarray, per_channel: bool) -> np.ndarray:
    """Symmetric int8 of a [K, N] MatMul weight, one scale per output column (or per tensor)."""
    peak = np.max(np.abs(weight), axis=0, keepdims=True) if per_channel else np.max(np.abs(weight))
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    return (np.clip(np.round(weight / scale), -127, 127) * scale).astype(np.float32)


def _activation_round_trip(
    helper: Any,
    numpy_helper: Any,
    name: str,
    tag: str,
    switch: str,
    ranges: Mapping[str, tuple[float, float]] | None,
) -> list[Any]:
    """Nodes computing ``x + switch * (dequant(quant(x)) - x)`` for activation ``x``."""
    if ranges is None:
        quantize = helper.make_node(
            "DynamicQuantizeLinear", [name], [f"{tag}_q", f"{tag}_scale", f"{tag}_zero"]
        )
        dequantize = helper.make_node(
            "DequantizeLinear", [f"{tag}_q", f"{tag}_scale", f"{tag}_zero"], [f"{tag}_dq"]
        )
        nodes = [quantize, dequantize]
    else:  # uint8 over the calibrated range widened to include 0, as the quantizer does
        low, high = ranges[name]
        low, high = min(low, 0.0), max(high, 0.0)
        scale = np.float32((high - low) / 255.0 or 1.0)
        zero = np.uint8(np.clip(round(-low / scale), 0, 255))
        constants = [
            helper.make_node("Constant", [], [f"{tag}_scale"],
                             value=numpy_helper.from_array(np.array(scale))),
            helper.make_node("Constant", [], [f"{tag}_zero"],
                             value=numpy_helper.from_array(np.array(zero))),
        ]
        nodes = [
            *constants,
            helper.make_node("QuantizeLinear", [name, f"{tag}_scale", f"{tag}_zero"], [f"{tag}_q"]),
            helper.make_node(
                "DequantizeLinear", [f"{tag}_q", f"{tag}_scale", f"{tag}_zero"], [f"{tag}_dq"]
            ),
        ]
    return [
        *nodes,
        helper.make_node("Sub", [f"{tag}_dq", name], [f"{tag}_error"]),
        helper.make_node("Mul", [switch, f"{tag}_error"], [f"{tag}_step"]),
        helper.make_node("Add", [name, f"{tag}_step"], [f"{tag}_out"]),
    ]
