"""The ``fused`` and ``fp16`` variants: ONNX Runtime's offline transformer optimizer.

The optimizer rewrites attention, layer norms and GELU into single fused operators (Attention,
EmbedLayerNormalization, SkipLayerNormalization, BiasGelu). On this project's 2-core CPU that did
not beat ORT's own load-time fusion (equal to 10% slower), so ``fused`` is a variant to measure,
mostly for CUDA, where the fused kernels, and fp16 on top of them, pay off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from export.dependencies import require

# Encoder classifiers (BERT, DistilBERT, RoBERTa, ...) all fuse with the optimizer's "bert" rules.
FUSION_MODEL_TYPE = "bert"
# Attribute names of the head count and width across transformers configs (DistilBERT: n_heads/dim).
_HEAD_KEYS = ("num_attention_heads", "n_heads", "num_heads")
_WIDTH_KEYS = ("hidden_size", "dim", "d_model")


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
    if float16:
        model.convert_float_to_float16(keep_io_types=True)
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
    return made_with


def half_precision_graph(source: Path, target: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The fp16 variant: fused, then converted to float16 (for CUDA)."""
    return fuse_graph(source, target, config, float16=True)
