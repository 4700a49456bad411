"""The ``int8`` variant: dynamic quantization for CPU (static QDQ is the search's other way).

Weights of MatMul nodes are stored as int8 and activations are quantized per call, so no
calibration data is needed. Both ways also store the embedding tables that Gather nodes read in
8 bits (one scale per table; the Gather then picks 8-bit rows, dequantized after the lookup): in
a DistilBERT-base the word-embedding table alone is 94 MB of its 268 MB in fp32, so an int8
variant that left it in fp32 (static QDQ did, quantizing MatMul only) was 53% of the fp32 size
instead of 26%. It costs static some speed (DistilBERT-base, b1, 122 tokens: 91 vs 80 ms with
fp32 tables, 2 shared cores); the search still times both ways and keeps the faster.

Measured on the real all-MiniLM-L6-v2 encoder (benchmarks/int8_accuracy.py): per-channel weight
scales flip fewer labels than one scale per tensor and run no slower, so they are the default;
keeping the feed-forward down-projections in fp32 removes about half of the remaining flips at a
cost in speed, so it is an option.

Weights that reach a MatMul through a Transpose (T5's LM head reads ``Transpose(shared.weight)``,
the tied embedding table) are folded into transposed initializers first: ``quantize_dynamic`` only
quantizes a MatMul whose weight is an initializer, and it would quantize the table for the
embedding lookup instead, leaving the head to dequantize 32k x 512 weights on every decoder step
(measured on t5-small: an int8 decoder step 2.3x slower than fp32 instead of faster).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError
from export.dependencies import require
from export.quiet import quiet_library_output
from export.variants.t5_step import compact_step

# Node-name patterns of layers that may be kept in fp32, by the name the CLI accepts.
SENSITIVE_LAYERS = {
    # The second feed-forward matmul (BERT/RoBERTa output.dense, DistilBERT ffn.lin2, T5 wo):
    # its inputs are the widest-ranging activations of a layer, the worst case for 8 bits.
    "ffn-down": r"(layer\.\d+/output/dense|ffn/lin2|DenseReluDense/wo)/",
}


@dataclass(frozen=True)
class QuantizeSettings:
    """How the int8 variant is made.

    Attributes:
        per_channel: one weight scale per output channel instead of one per tensor.
        reduce_range: 7-bit weights; needed only on x86 CPUs without VNNI, where the u8 x s8
            dot products can saturate.
        keep_fp32: names from ``SENSITIVE_LAYERS`` whose nodes stay in fp32.
    """

    per_channel: bool = True
    reduce_range: bool = False
    keep_fp32: tuple[str, ...] = ()


def quantize_graph(
    source: Path, target: Path, config: Mapping[str, Any], settings: QuantizeSettings
) -> dict[str, Any]:
    """Write the dynamically quantized version of ``source`` to ``target`` (the recipe builder).

    T5's KV-cached decoder step is quantized from its compact rewrite (``compact_step``: the same
    computation in ~100 fused ops instead of ~1,000, so each generated token costs fewer ops).

    Returns:
        How the variant was made, for the manifest.

    Raises:
        InputError: ``keep_fp32`` names an unknown layer group.
        StepRewriteError: T5's decoder step cannot be rewritten, or the rewrite differs.
        MissingDependencyError: onnx or onnxruntime's quantization tools are not installed.
    """
    with compact_step(source, config) as (graph, _, rewritten):
        return {**quantize_int8(graph, target, settings), **rewritten}


@dataclass(frozen=True)
class StaticCalibration:
    """Inputs that give static int8 its activation ranges, and where the ranges are cached.

    The cache lets the accuracy-aware search re-quantize with other nodes kept in fp32 without
    running the calibration texts again.
    """

    feeds: Sequence[Mapping[str, Any]]
    cache: Path


def quantize_int8(
    source: Path,
    target: Path,
    settings: QuantizeSettings,
    calibration: StaticCalibration | None = None,
    keep_nodes: Sequence[str] = (),
    only_nodes: Sequence[str] = (),
) -> dict[str, Any]:
    """Quantize ``source`` into ``target``: dynamic int8, or static QDQ with ``calibration``.

    ``keep_nodes`` stay fp32 besides the ``settings.keep_fp32`` groups; a non-empty
    ``only_nodes`` quantizes those nodes alone (to measure one node's share of the error).

    Raises:
        InputError: ``keep_fp32`` names an unknown layer group.
        MissingDependencyError: onnx or onnxruntime's quantization tools are not installed.
    """
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    model = onnx.load(str(source))
    excluded = excluded_nodes(model, settings.keep_fp32) + list(keep_nodes)
    folded = fold_weight_transposes(model)
    common = {
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "weight_type": quantization.QuantType.QInt8,
        "nodes_to_exclude": excluded,
        "nodes_to_quantize": list(only_nodes) or None,
    }
    with quiet_library_output():  # it logs a "consider pre-processing" hint on every call
        if calibration is None:
            quantization.quantize_dynamic(
                model,
                str(target),
                # Needed on graphs that went through the transformer optimizer (ONNX-FACTS).
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                **common,
            )
        else:
            quantization.quantize_static(
                model,
                str(target),
                _FeedReader(calibration.feeds),
                quant_format=quantization.QuantFormat.QDQ,
                # The matmuls and the embedding lookups (weights only: a table's own range);
                # static ranges for LayerNorm, Softmax or GELU outputs cost accuracy on trained
                # weights and save little time.
                op_types_to_quantize=["MatMul", "Gather"],
                # u8 activations x s8 weights: the pair MLAS runs fastest on x86 (VNNI / AMX).
                activation_type=quantization.QuantType.QUInt8,
                calibration_cache_path=calibration.cache,
                **common,
            )
    return {
        "method": "onnxruntime.quantization." + ("quantize_dynamic" if calibration is None
                                                  else "quantize_static (QDQ, MinMax)"),
        "weight_type": "QInt8",
        "activation_type": "QUInt8 (dynamic)" if calibration is None else "QUInt8 (calibrated)",
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "kept_fp32": list(settings.keep_fp32),
        "nodes_kept_fp32": len(excluded),
        "folded_weight_transposes": folded,
        "onnxruntime": require("onnxruntime").__version__,
    }


class _FeedReader:
    """The calibration inputs one by one, as ``quantize_static``'s data reader protocol wants."""

    def __init__(self, feeds: Sequence[Mapping[str, Any]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> Mapping[str, Any] | None:
        return next(self._feeds, None)


def fold_weight_transposes(model: Any) -> int:
    """Replace each Transpose of an initializer by the transposed initializer, in place.

    The original initializer stays for its other users (T5's embedding lookup). Returns how many
    Transpose nodes were folded.
    """
    numpy_helper = require("onnx.numpy_helper")
    weights = {initializer.name: initializer for initializer in model.graph.initializer}
    folded = [
        node for node in model.graph.node
        if node.op_type == "Transpose" and len(node.input) == 1 and node.input[0] in weights
    ]
    for node in folded:
        perm = next((list(attr.ints) for attr in node.attribute if attr.name == "perm"), None)
        array = numpy_helper.to_array(weights[node.input[0]])
        transposed = array.transpose(perm) if perm else array.T
        model.graph.initializer.append(numpy_helper.from_array(transposed, node.output[0]))
        model.graph.node.remove(node)
    return len(folded)


def excluded_nodes(model: Any, groups: tuple[str, ...]) -> list[str]:
    """Names of the nodes matched by the ``SENSITIVE_LAYERS`` groups in ``groups``.

    Raises:
        InputError: a group name is unknown.
    """
    unknown = [group for group in groups if group not in SENSITIVE_LAYERS]
    if unknown:
        raise InputError(
            f"Unknown layer group(s) {unknown} to keep in fp32. Choose from: "
            f"{', '.join(SENSITIVE_LAYERS)}."
        )
    patterns = [re.compile(SENSITIVE_LAYERS[group]) for group in groups]
    return [
        node.name
        for node in model.graph.node
        if any(pattern.search(node.name) for pattern in patterns)
    ]

