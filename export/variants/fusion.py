"""The ``fused`` and ``fp16`` variants: ONNX Runtime's offline transformer optimizer.

The optimizer rewrites attention, layer norms and GELU into single fused operators (Attention,
EmbedLayerNormalization, SkipLayerNormalization, BiasGelu). On this project's 2-core CPU that did
not beat ORT's own load-time fusion (equal to 10% slower), so ``fused`` is a variant to measure,
mostly for CUDA, where the fused kernels, and fp16 on top of them, pay off.

T5 graphs are fused with the "bert" rules too (RMSNorm -> SimplifiedLayerNormalization, FastGelu):
``model_type="t5"`` always fuses RelativePositionBias, which has no CPU kernel, so the graph would
not even load on CPU. T5 in fp16 overflows (the feed-forward output passes 65504), so its fp16
variant is mixed precision, as ONNX Runtime's own T5 tooling makes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from export.dependencies import require
from export.variants.quantize import excluded_nodes

# Encoder classifiers (BERT, DistilBERT, RoBERTa, ...) all fuse with the optimizer's "bert" rules.
FUSION_MODEL_TYPE = "bert"
# Attribute names of the head count and width across transformers configs (DistilBERT: n_heads/dim).
_HEAD_KEYS = ("num_attention_heads", "n_heads", "num_heads")
_WIDTH_KEYS = ("hidden_size", "dim", "d_model")
# T5 operators kept in fp32: ONNX Runtime's T5 auto mixed precision keeps the first four; the
# others are the unfused RMSNorm, should the optimizer leave one (x**2 of the residual overflows
# first). The residual stream (Add, the Skip* norms) thus stays fp32 end to end.
T5_FP32_OPS = (
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "Relu",
    "Add",
    "Pow",
    "ReduceMean",
    "Sqrt",
)


def attention_shape(config: Mapping[str, Any]) -> tuple[int, int]:
    """``(num_heads, hidden_size)`` from a Hugging Face config; ``(0, 0)`` lets ORT detect them."""
    heads = next((int(config[key]) for key in _HEAD_KEYS if key in config), 0)
    width = next((int(config[key]) for key in _WIDTH_KEYS if key in config), 0)
    return (heads, width) if heads and width else (0, 0)


def fuse_graph(
    source: Path, target: Path, config: Mapping[str, Any], float16: bool = False
) -> dict[str, Any]:
    """Write ``source`` through the transformer optimizer to ``target``; optionally in fp16.

    fp16 keeps the graph's inputs and outputs in their original types (int64 ids, fp32 logits),
    so the engine feeds and reads every variant the same way.

    Returns:
        How the variant was made, for the manifest: method, settings, fused operator counts.

    Raises:
        MissingDependencyError: onnxruntime's transformers tools (or onnx) are not installed.
    """
    optimizer = require("onnxruntime.transformers.optimizer")
    heads, width = attention_shape(config)
    model = optimizer.optimize_model(
        str(source), model_type=FUSION_MODEL_TYPE, num_heads=heads, hidden_size=width
    )
    fused = {op: count for op, count in model.get_fused_operator_statistics().items() if count}
    blocks = fp32_blocks(model.model, config) if float16 else {}
    if float16:
        model.convert_float_to_float16(keep_io_types=True, **blocks)
    model.save_model_to_file(str(target))
    made_with: dict[str, Any] = {
        "method": "onnxruntime.transformers.optimizer.optimize_model",
        "model_type": FUSION_MODEL_TYPE,
        "num_heads": heads,
        "hidden_size": width,
        "fused_operators": fused,
        "onnxruntime": require("onnxruntime").__version__,
    }
    if float16:
        made_with["float16"] = {"method": "convert_float_to_float16", "keep_io_types": True}
        if blocks:
            made_with["float16"]["kept_fp32_ops"] = list(T5_FP32_OPS)
            made_with["float16"]["kept_fp32_nodes"] = blocks["node_block_list"]
    return made_with


def fp32_blocks(model: Any, config: Mapping[str, Any]) -> dict[str, list[str]]:
    """The float16 converter's ``op_block_list`` / ``node_block_list`` for this model.

    Empty (the converter's defaults) except for T5, where the ops in ``T5_FP32_OPS``, the
    feed-forward down-projections (their output alone passes fp16's 65504), the LM head (kept
    in fp32 for precision, as ONNX Runtime's T5 tooling does) and the embedding lookups stay in
    fp32. The embeddings start the fp32 residual stream; in fp16 their output would feed two
    fp32 nodes, for which the converter writes two Cast nodes of the same name (an invalid
    graph). A block list replaces the converter's default one, which lists ops without fp16
    kernels, so ours extends it.

    Raises:
        MissingDependencyError: onnxruntime's transformers tools are not installed.
    """
    if config.get("model_type") != "t5":
        return {}
    float16 = require("onnxruntime.transformers.float16")
    # The token embedding tables: [vocab_size, d_model] (the position-bias table is much smaller).
    tables = {
        initializer.name for initializer in model.graph.initializer
        if initializer.dims[:1] == [config.get("vocab_size")]
    }
    kept = [
        node.name for node in model.graph.node
        if (node.op_type == "MatMul" and "logits" in node.output)
        or (node.op_type == "Gather" and node.input[0] in tables)
    ]
    return {
        "op_block_list": sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(T5_FP32_OPS)),
        "node_block_list": excluded_nodes(model, ("ffn-down",)) + kept,
    }


def half_precision_graph(source: Path, target: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The fp16 variant: fused, then converted to float16 (for CUDA; T5 in mixed precision)."""
    return fuse_graph(source, target, config, float16=True)
