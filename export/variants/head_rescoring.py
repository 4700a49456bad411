"""A cheap LM head that is exact where decisions are made: 4-bit logits, the top ones re-scored.

At batch 1 the LM head is the largest single matmul of a decoder step (t5-small: 512 x 32,128,
16 MB in int8, a third of the int4 step's time). Greedy and beam search only ever pick among the
few likeliest tokens, so the head is split in two: a 4-bit head (MatMulNBits) ranks the whole
vocabulary, and the ``candidates`` best-ranked tokens of each position get their logits computed
again from a float16 copy of the head's rows (Gather of those rows, one small matmul), written
over the 4-bit ones. Every logit a decision compares is then the fp32 head's to float16 rounding
of its weights; the 4-bit error stays in the tail, where it only moves log-softmax's normalizer.
Reading 32 rows per position costs nothing next to streaming the head; the float16 table costs
memory (2 bytes per weight), not time.

Measured on a full-size random t5-small step, batch 1 (Intel Xeon with AMX, 2 cores, ORT
profiler): int8 head 1.39 ms; 4-bit head (block 32) 0.72 ms + re-scoring 0.19 ms; in blocks of
128, 0.59 ms. A 4-bit head alone flipped a token decision at a 0.58-nat margin there and failed
the gate; re-scored, its logits at the decided tokens are the int8 head's or closer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from export.dependencies import require
from export.errors import ExportError

OUTPUT_LOGITS = "logits"
# Tokens per position whose logits are re-scored: beam search with up to 16 beams takes its
# 2 x beams candidates per beam from among them.
RESCORED_CANDIDATES = 32
# The 4-bit head only ranks; coarser blocks stream fewer scale bytes (0.59 vs 0.72 ms, above).
HEAD_BLOCK_SIZE = 128
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def rescore_head_candidates(
    model: Any, candidates: int = RESCORED_CANDIDATES
) -> tuple[str, dict[str, Any]]:
    """Re-score the top ``candidates`` logits of ``model``'s LM head exactly, in place.

    The LM head is the MatMul that writes ``logits`` from a constant ``[hidden, vocab]`` weight;
    it keeps that weight (for the 4-bit packer) and now writes approximate logits, which a TopK,
    a Gather of the head's rows and a MatMul re-score before ``logits`` is written.

    Returns:
        The head weight's initializer name, and how the head was made (for the manifest).

    Raises:
        ExportError: the graph has no such LM head.
    """
    helper, numpy_helper = require("onnx.helper"), require("onnx.numpy_helper")
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    head = next((node for node in model.graph.node
                 if node.op_type == "MatMul" and OUTPUT_LOGITS in node.output
                 and node.input[1] in weights and len(weights[node.input[1]].dims) == 2), None)
    if head is None:
        raise ExportError("The decoder has no LM head (a MatMul of a constant weight that "
                          f"writes '{OUTPUT_LOGITS}') to re-score.")
    hidden, weight = head.input
    matrix = numpy_helper.to_array(weights[weight])
    vocab = matrix.shape[1]
    rows_type = np.float16 if np.abs(matrix).max() <= _FLOAT16_MAX else np.float32
    count = min(candidates, vocab)
    approximate = f"{OUTPUT_LOGITS}.approximate"
    head.output[0] = approximate
    model.graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(matrix.T.astype(rows_type)), "lm_head.rows"),
        numpy_helper.from_array(np.array([count], np.int64), "rescore.count"),
        numpy_helper.from_array(np.array([-1], np.int64), "rescore.last_axis"),
    ])

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> Any:
        return helper.make_node(op, inputs, [output], name=f"rescore/{op}", **attributes)

    model.graph.node.extend([
        helper.make_node("TopK", [approximate, "rescore.count"],
                         ["rescore.top_values", "rescore.top_ids"], axis=-1, name="rescore/TopK"),
        node("Gather", ["lm_head.rows", "rescore.top_ids"], "rescore.rows", axis=0),
        node("Cast", ["rescore.rows"], "rescore.rows_fp32", to=1),  # FLOAT
        node("Unsqueeze", [hidden, "rescore.last_axis"], "rescore.hidden_column"),
        node("MatMul", ["rescore.rows_fp32", "rescore.hidden_column"], "rescore.exact_column"),
        node("Squeeze", ["rescore.exact_column", "rescore.last_axis"], "rescore.exact"),
        node("ScatterElements", [approximate, "rescore.top_ids", "rescore.exact"],
             OUTPUT_LOGITS, axis=-1),
    ])
    return weight, {
        "method": f"4-bit ranking head (MatMulNBits, blocks of {HEAD_BLOCK_SIZE}); the top "
                  f"{count} logits per position re-scored from {np.dtype(rows_type).name} rows",
        "candidates": count,
        "rows": np.dtype(rows_type).name,
    }
