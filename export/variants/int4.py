"""The ``int4`` variant (T5): 4-bit decoder weights, the decoder step rewritten to fewer ops.

Generation at batch 1 streams every decoder weight once per token, so a decoder step's time is
its weight bytes plus its op count (issue 18's profile). This variant halves int8's layer bytes:
each decoder matmul becomes ONNX Runtime's ``MatMulNBits`` with 4-bit weights in blocks of 32
along the input dimension (one fp32 scale per block, symmetric), computed at accuracy level 4
(int8 activations: the VNNI / AMX path, as llama.cpp-style CPU decoders do). The KV-cached step
is first rewritten into about 100 fused ops (:mod:`export.variants.t5_step`), checked equal to
the exported step before it is quantized. The encoder runs once per call over every source
token, where 4-bit weights are slower than int8 (ONNX-FACTS: a MiniLM-sized encoder at s16), so
it gets the ``int8`` variant's dynamic quantization.

The step's LM head is a 4-bit ranking head whose top logits are re-scored from float16 rows
(:mod:`export.variants.head_rescoring`).

Measured on a full-size random t5-small (Intel Xeon with AMX, 2 cores, greedy, 32 tokens;
``benchmarks/results/intel-amx-t5-small-int4*.md``): 4.3-5.2 ms per token at batch 1 against
int8's 6.3-6.8 and CTranslate2 int8's 6.5-6.8; slower than int8 at batch 8 (M = 8 rows per
matmul), where MLAS's int8 GEMM (AMX) wins. ``auto`` picks by the timings ``optimize`` records,
and the token gate decides whether 4 bits are accurate enough for the model at hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export.dependencies import require
from export.variants.head_rescoring import (
    HEAD_BLOCK_SIZE,
    OUTPUT_LOGITS,
    rescore_head_candidates,
)
from export.variants.quantize import QuantizeSettings, quantize_int8
from export.variants.t5_step import MICROSOFT, PAST_INPUT, compact_step

INT4_BITS = 4
INT4_BLOCK_SIZE = 32
# MatMulNBits' compute type: 4 = int8 activations (quantized per block on the fly).
INT4_ACCURACY_LEVEL = 4


def int4_graph(
    source: Path, target: Path, config: Mapping[str, Any],
    encoder: QuantizeSettings = QuantizeSettings(),
) -> dict[str, Any]:
    """Write ``source``'s int4 version to ``target`` (the recipe builder; one call per graph).

    The KV-cached decoder step is rewritten, checked against ``source`` and made 4-bit, its LM
    head a 4-bit ranking head whose top logits are re-scored exactly
    (:mod:`export.variants.head_rescoring`); the first decoder step (run once per call) is made
    4-bit as exported, its head in int8; the encoder is quantized like ``int8`` with ``encoder``.

    Returns:
        How the graph was made, for the manifest.

    Raises:
        StepRewriteError: the decoder step cannot be rewritten, or the rewrite differs.
        MissingDependencyError: onnx or onnxruntime is not installed.
    """
    onnx = require("onnx")
    with compact_step(source, config) as (graph, model, made_with):
        inputs = {value.name for value in model.graph.input}
        if "encoder_hidden_states" not in inputs and PAST_INPUT not in inputs:
            return {**quantize_int8(source, target, encoder),
                    "int4": "none: the encoder runs int8"}
        step = PAST_INPUT in inputs
        int8_nodes = _int8_nodes(model, config.get("vocab_size"), head=not step)
        int8_made = quantize_int8(graph, target, QuantizeSettings(), only_nodes=int8_nodes)
    model = onnx.load(str(target))
    lm_head: str | dict[str, Any] = "int8 (dynamic)"
    block_sizes = {}
    if step:
        weight, lm_head = rescore_head_candidates(model)
        block_sizes[weight] = HEAD_BLOCK_SIZE
    packed = pack_matmuls(model, block_sizes=block_sizes)
    onnx.save(model, str(target))
    return {
        "method": "4-bit weights (com.microsoft MatMulNBits, symmetric, round to nearest); "
                  "the embedding table in int8 (dynamic)",
        "bits": INT4_BITS,
        "block_size": INT4_BLOCK_SIZE,
        "accuracy_level": INT4_ACCURACY_LEVEL,
        "matmuls_4bit": packed,
        "lm_head": lm_head,
        "int8": {key: int8_made[key] for key in (
            "method", "per_channel", "folded_weight_transposes")},
        **made_with,
        "onnxruntime": require("onnxruntime").__version__,
    }


def _int8_nodes(model: Any, vocab_size: int | None, head: bool) -> list[str]:
    """The nodes kept in int8: the token embedding lookup (8-bit rows instead of a second fp32
    copy of the table in each decoder file: a lookup has no arithmetic for 4 bits to save) and,
    with ``head``, the LM head (where it is not re-scored, its error lands on the logits
    unmixed: in 4 bits it flipped clear token decisions of a random t5-small, at margins up to
    0.58 nats; in int8 it keeps them)."""
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    return [
        node.name for node in model.graph.node
        if (head and OUTPUT_LOGITS in node.output)
        or (node.op_type == "Gather" and node.input[0] in weights
            and list(weights[node.input[0]].dims[:1]) == [vocab_size])
    ]


def pack_matmuls(
    model: Any, accuracy_level: int = INT4_ACCURACY_LEVEL,
    block_sizes: Mapping[str, int] | None = None,
) -> int:
    """Replace every MatMul with a constant 2-D weight by ``MatMulNBits``, in place.

    Each ``[K, N]`` weight is stored as N rows of ``ceil(K / block_size)`` blocks, a scale per
    block (its largest |w| maps to 7), values offset by 8 (the op's default zero point), two
    4-bit values per byte, low nibble first. ``block_sizes`` maps weight names to another block
    size than ``INT4_BLOCK_SIZE``; ``accuracy_level`` is MatMulNBits' compute type (0: fp32,
    exact to the dequantized weights). Returns how many weights were packed.
    """
    block_sizes = block_sizes or {}
    helper, numpy_helper = require("onnx.helper"), require("onnx.numpy_helper")
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes, packed, replaced = [], [], set()
    for node in model.graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(node)
            continue
        name = node.input[1]
        block_size = block_sizes.get(name, INT4_BLOCK_SIZE)
        if name not in replaced:  # a weight two matmuls share is stored once
            values, scales = quantize_blocks(numpy_helper.to_array(weight), block_size)
            packed += [numpy_helper.from_array(values, f"{name}.q4"),
                       numpy_helper.from_array(scales, f"{name}.scales")]
            replaced.add(name)
        rows, columns = weight.dims
        nodes.append(helper.make_node(
            "MatMulNBits", [node.input[0], f"{name}.q4", f"{name}.scales"], list(node.output),
            name=node.name or f"{node.output[0]}/MatMulNBits", domain=MICROSOFT,
            K=rows, N=columns, bits=INT4_BITS, block_size=block_size,
            accuracy_level=accuracy_level,
        ))
    still_used = {name for node in nodes for name in node.input}
    kept = [tensor for tensor in model.graph.initializer
            if tensor.name not in replaced or tensor.name in still_used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + packed)
    if not any(opset.domain == MICROSOFT for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MICROSOFT, 1))
    return len(replaced)


def quantize_blocks(
    weight: np.ndarray, block_size: int = INT4_BLOCK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """``(values, scales)`` of a ``[K, N]`` weight in MatMulNBits' 4-bit layout.

    values: uint8 ``[N, blocks, block_size // 2]``; scales: float32 ``[N * blocks]``.
    """
    rows, columns = weight.shape
    blocks = -(-rows // block_size)
    padded = np.zeros((columns, blocks * block_size), np.float32)
    padded[:, :rows] = weight.T
    grouped = padded.reshape(columns, blocks, block_size)
    scales = np.abs(grouped).max(axis=-1) / 7
    scales[scales == 0] = 1.0
    levels = (np.clip(np.rint(grouped / scales[..., None]), -7, 7) + 8).astype(np.uint8)
    values = levels[..., 0::2] | (levels[..., 1::2] << 4)
    return np.ascontiguousarray(values), scales.reshape(-1).astype(np.float32)
