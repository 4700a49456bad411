"""T5's decoder step rewritten as a compact graph: about 100 nodes instead of about 1,000.

The exported ``decoder_with_past`` graph is torch's trace of Hugging Face's T5 module: per layer,
attention is spelled out in Reshape / Transpose / Concat / MatMul / Softmax nodes, and the
relative position bias and masks are recomputed from shapes on every step. At batch 1 the
weights are small enough that those ~1,000 small ops, not the matmuls, decide a step's time once
the matmuls are 4-bit (issue 18's profile: ``benchmarks/results/intel-amx-t5-profile.md``).

:func:`decoder_step_graph` writes the same computation with ONNX Runtime's fused operators: one
QKV matmul and one ``MultiHeadAttention`` (KV cache appended inside it) per self-attention, one
``MultiHeadAttention`` over the cached encoder keys per cross-attention,
``SkipSimplifiedLayerNormalization`` for each residual add + RMSNorm, and the relative position
bias looked up once per step from a precomputed ``[max_distance + 1, heads]`` table (T5's
bucketing depends only on the distance, which saturates at ``max_distance``). The inputs and
outputs are the exported graph's, so the engine runs either unchanged.

The weights are read from the exported graph itself (by the node names torch gives each module),
so no PyTorch is needed, and :func:`check_same_outputs` compares the two graphs before the
rewrite is used: a naming change in a later exporter is a build error, never a wrong variant.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.dependencies import require
from export.errors import ExportError

MICROSOFT = "com.microsoft"
# Far below any attention logit, finite in fp32: masks future positions (exp underflows to 0).
_MASKED = -1e9
# The rewrite must reproduce the exported graph to fp32 rounding (seen: 8e-6 on t5-small).
SAME_OUTPUTS_TOLERANCE = 1e-4
# Feed-forward activations by Hugging Face's ``dense_act_fn`` and the ONNX Runtime op computing it.
_ACTIVATIONS = {"relu": ("Relu", ""), "gelu_new": ("FastGelu", MICROSOFT),
                "gelu_pytorch_tanh": ("FastGelu", MICROSOFT), "gelu": ("Gelu", MICROSOFT)}


# An input only the KV-cached decoder step has.
PAST_INPUT = "past_key_values.0.decoder.key"


class StepRewriteError(ExportError):
    """The exported decoder is not a T5 decoder this rewrite understands, or the rewrite differs."""


@dataclass(frozen=True)
class StepShape:
    """The dimensions and settings of T5's decoder that the rewrite needs (from config.json)."""

    layers: int
    heads: int
    head_size: int
    epsilon: float
    buckets: int
    max_distance: int
    activation: str
    gated: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StepShape:
        """Raises StepRewriteError for a model that is not T5-shaped or has another activation."""
        if config.get("model_type") not in ("t5", "mt5"):
            model_type = config.get("model_type")
            raise StepRewriteError(
                f"The decoder step rewrite is for T5 / mT5 models, not {model_type!r}."
            )
        projection = str(config.get("feed_forward_proj", "relu"))
        gated = projection.startswith("gated-")
        activation = str(config.get("dense_act_fn") or projection.removeprefix("gated-"))
        if activation not in _ACTIVATIONS:
            raise StepRewriteError(
                f"The decoder step rewrite has no fused op for the activation {activation!r} "
                f"(it supports {', '.join(_ACTIVATIONS)})."
            )
        return cls(
            layers=int(config.get("num_decoder_layers") or config["num_layers"]),
            heads=int(config["num_heads"]),
            head_size=int(config["d_kv"]),
            epsilon=float(config.get("layer_norm_epsilon", 1e-6)),
            buckets=int(config.get("relative_attention_num_buckets", 32)),
            max_distance=int(config.get("relative_attention_max_distance", 128)),
            activation=activation,
            gated=gated,
        )


def relative_bucket(distance: int, buckets: int, max_distance: int) -> int:
    """T5's causal relative-position bucket of a key ``distance`` positions before the query.

    Hugging Face's ``T5Attention._relative_position_bucket`` with ``bidirectional=False``,
    computed in float32 as it does: exact distances below ``buckets // 2``, then logarithmic
    buckets up to ``max_distance``, the last bucket beyond.
    """
    exact = buckets // 2
    if distance < exact:
        return distance
    scaled = (np.log(np.float32(distance) / np.float32(exact))
              / np.float32(math.log(max_distance / exact)) * np.float32(buckets - exact))
    return min(exact + int(np.float32(scaled)), buckets - 1)


class _ExportedWeights:
    """The initializers of the exported decoder graph, found by the module names torch gives."""

    def __init__(self, model: Any) -> None:
        numpy_helper = require("onnx.numpy_helper")
        self._array = numpy_helper.to_array
        self._initializers = {tensor.name: tensor for tensor in model.graph.initializer}
        self._nodes = {node.name: node for node in model.graph.node}
        self._producers = {output: node for node in model.graph.node for output in node.output}

    def tensor(self, name: str) -> np.ndarray | None:
        """An initializer or a Constant node's value by tensor name (through the Identity nodes
        torch's exporter writes for a tensor shared by several modules); None for a computed one.
        """
        if name in self._initializers:
            return self._array(self._initializers[name])
        node = self._producers.get(name)
        if node is not None and node.op_type == "Constant":
            return self._array(node.attribute[0].t)
        if node is not None and node.op_type == "Identity":
            return self.tensor(node.input[0])
        return None

    def node_weight(self, node_name: str, transposed_ok: bool = False) -> np.ndarray:
        """The constant input of node ``node_name`` (a MatMul's ``[in, out]`` weight).

        ``transposed_ok``: the weight may reach the node through a Transpose of an initializer
        (T5's tied LM head reads ``Transpose(shared.weight)``).

        Raises:
            StepRewriteError: no such node, or it has no constant input.
        """
        node = self._nodes.get(node_name)
        if node is None:
            raise StepRewriteError(f"The exported decoder has no node '{node_name}'.")
        for name in node.input:
            value = self.tensor(name)
            if value is not None and value.ndim >= 1:
                return value
            producer = self._producers.get(name)
            if transposed_ok and producer is not None and producer.op_type == "Transpose":
                source = self.tensor(producer.input[0])
                if source is not None:
                    return source.T
        raise StepRewriteError(f"Node '{node_name}' of the exported decoder has no weight input.")

    def embedding(self) -> np.ndarray:
        """The token embedding table: the constant that a Gather of ``input_ids`` (or of its
        Reshape) reads."""
        for node in self._nodes.values():
            if node.op_type != "Gather":
                continue
            indices = self._producers.get(node.input[1])
            reshaped = indices is not None and indices.op_type == "Reshape"
            if "input_ids" in (node.input[1], indices.input[0] if reshaped else None):
                table = self.tensor(node.input[0])
                if table is not None:
                    return table
        raise StepRewriteError("The exported decoder has no embedding lookup of 'input_ids'.")

    def head_scale(self) -> float:
        """The factor applied between the final norm and the LM head (tied heads: d_model^-0.5)."""
        head = self._nodes.get("/lm_head/MatMul")
        if head is None:
            raise StepRewriteError("The exported decoder has no node '/lm_head/MatMul'.")
        producer = self._producers.get(head.input[0])
        if producer is None or producer.op_type != "Mul":
            return 1.0
        constants = [self.tensor(name) for name in producer.input]
        values = [value for value in constants if value is not None and value.size == 1]
        return float(values[0].reshape(())) if values else 1.0


class _GraphWriter:
    """Nodes and initializers of the graph being written."""

    def __init__(self) -> None:
        self.helper = require("onnx.helper")
        self._numpy_helper = require("onnx.numpy_helper")
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], domain: str = "",
             **attributes: Any) -> str:
        self.nodes.append(self.helper.make_node(op, list(inputs), list(outputs),
                                                name=f"{outputs[0]}/{op}", domain=domain or None,
                                                **attributes))
        return outputs[0]


@contextmanager
def compact_step(
    source: Path, config: Mapping[str, Any]
) -> Iterator[tuple[Path, Any, dict[str, Any]]]:
    """``(graph, model, made_with)``: where ``source`` is T5's KV-cached decoder step, its
    checked rewrite in a scratch file beside it (removed on exit), that rewrite as an
    ``onnx.ModelProto`` and how it was made; else ``source``, its loaded model and ``{}``. The
    quantizers (int8, int4) start from what this yields.

    Raises:
        StepRewriteError: the step cannot be rewritten, or the rewrite differs from ``source``.
    """
    onnx = require("onnx")
    exported = onnx.load(str(source))
    if PAST_INPUT not in {value.name for value in exported.graph.input}:
        yield source, exported, {}
        return
    model = decoder_step_graph(exported, config)
    with tempfile.TemporaryDirectory(dir=source.parent, prefix=".step-") as scratch:
        rewritten = Path(scratch) / source.name
        onnx.save(model, str(rewritten))
        worst = check_same_outputs(source, rewritten, config)
        yield rewritten, model, {"rewritten_step": {
            "method": "export.variants.t5_step.decoder_step_graph",
            "nodes": len(model.graph.node),
            "max_abs_diff_vs_exported": worst,
        }}


def decoder_step_graph(exported: Any, config: Mapping[str, Any]) -> Any:
    """The compact rewrite (an ``onnx.ModelProto``) of T5's exported ``decoder_with_past`` graph.

    Raises:
        StepRewriteError: the graph or config is not a T5 decoder the rewrite understands.
    """
    shape = StepShape.from_config(config)
    weights = _ExportedWeights(exported)
    graph = _GraphWriter()
    embedding = weights.embedding()
    _position_bias(graph, weights, shape)
    graph.node("Cast", ["encoder_attention_mask"], ["encoder_mask_int32"], to=6)  # INT32
    hidden = graph.node("Gather", [graph.constant("embedding", embedding), "input_ids"],
                        ["embedded"], axis=0)
    normed = graph.node("SimplifiedLayerNormalization", [
        hidden, graph.constant("layer0.norm0", _norm(weights, "/decoder/block.0/layer.0"))],
        ["layer0.normed0"], axis=-1, epsilon=shape.epsilon)
    for layer in range(shape.layers):
        hidden, normed = _decoder_layer(graph, weights, shape, layer, hidden, normed)
    scale = weights.head_scale()
    if scale != 1.0:
        normed = graph.node("Mul", [normed, graph.constant("head_scale", np.float32(scale))],
                            ["head_input"])
    head = weights.node_weight("/lm_head/MatMul", transposed_ok=True)
    graph.node("MatMul", [normed, graph.constant("lm_head", head)], ["logits"])
    model = graph.helper.make_model(
        graph.helper.make_graph(graph.nodes, "t5_decoder_step", list(exported.graph.input),
                                list(exported.graph.output), graph.initializers),
        opset_imports=[graph.helper.make_opsetid("", 18),
                       graph.helper.make_opsetid(MICROSOFT, 1)],
    )
    model.ir_version = exported.ir_version
    return model


def _norm(weights: _ExportedWeights, module: str) -> np.ndarray:
    return weights.node_weight(f"{module}/layer_norm/Mul_1")


def _position_bias(graph: _GraphWriter, weights: _ExportedWeights, shape: StepShape) -> None:
    """``self_bias`` [1, heads, new, past + new]: T5's relative position bias for the new
    positions, with the keys after each query masked (several new tokens at once decode
    causally, like the exported graph)."""
    table = weights.node_weight("/decoder/block.0/layer.0/SelfAttention/relative_attention_bias/"
                                "Gather")
    by_distance = np.stack([
        table[relative_bucket(distance, shape.buckets, shape.max_distance)]
        for distance in range(shape.max_distance + 1)
    ])
    zero = graph.constant("zero", np.int64(0))
    one = graph.constant("one", np.int64(1))
    past = graph.node("Gather", [graph.node("Shape", ["past_key_values.0.decoder.key"],
                                            ["past_shape"]), graph.constant("two", np.int64(2))],
                      ["past_length"], axis=0)
    new = graph.node("Gather", [graph.node("Shape", ["input_ids"], ["ids_shape"]), one],
                     ["new_length"], axis=0)
    total = graph.node("Add", [past, new], ["total_length"])
    keys = graph.node("Range", [zero, total, one], ["key_positions"])
    queries = graph.node("Range", [past, total, one], ["query_positions"])
    column = graph.node("Unsqueeze", [queries, graph.constant("axis1", np.array([1]))],
                        ["query_column"])
    distance = graph.node("Sub", [column, keys], ["distance"])
    future = graph.node("Less", [distance, zero], ["future"])
    clipped = graph.node("Clip", [distance, zero,
                                  graph.constant("max_distance", np.int64(shape.max_distance))],
                         ["clipped_distance"])
    bias = graph.node("Gather", [graph.constant("bias_by_distance", by_distance.astype(np.float32)),
                                 clipped], ["bias_sth"], axis=0)
    bias = graph.node("Transpose", [bias], ["bias_hst"], perm=[2, 0, 1])
    bias = graph.node("Where", [future, graph.constant("masked", np.float32(_MASKED)), bias],
                      ["bias_causal"])
    graph.node("Unsqueeze", [bias, graph.constant("axis0", np.array([0]))], ["self_bias"])


def _decoder_layer(graph: _GraphWriter, weights: _ExportedWeights, shape: StepShape, layer: int,
                   hidden: str, normed: str) -> tuple[str, str]:
    """One decoder block; returns the residual stream and its norm for the next block."""
    module = f"/decoder/block.{layer}"
    name = f"layer{layer}"

    def weight(path: str) -> str:
        return graph.constant(f"{name}.{path}", weights.node_weight(f"{module}/{path}/MatMul"))

    def project(source: str, path: str) -> str:
        # Named as exported, so the int8 quantizer's layer groups (e.g. ffn-down) find them.
        return graph.node("MatMul", [source, weight(path)], [f"{module}/{path}"])

    inner = shape.heads * shape.head_size
    qkv = np.concatenate([weights.node_weight(f"{module}/layer.0/SelfAttention/{part}/MatMul")
                          for part in "qkv"], axis=1)
    fused = graph.node("MatMul", [normed, graph.constant(f"{name}.qkv", qkv)], [f"{name}.qkv.out"])
    q, k, v = (f"{name}.{part}" for part in "qkv")
    graph.node("Split", [fused, graph.constant(f"{name}.split", np.array([inner] * 3))], [q, k, v],
               axis=-1)
    attended = graph.node(
        "MultiHeadAttention",
        [q, k, v, "", "", "self_bias", f"past_key_values.{layer}.decoder.key",
         f"past_key_values.{layer}.decoder.value"],
        [f"{name}.self_attention", f"present.{layer}.decoder.key",
         f"present.{layer}.decoder.value"],
        domain=MICROSOFT, num_heads=shape.heads, scale=1.0,  # T5 does not scale q.k
    )
    hidden, normed = _residual(graph, project(attended, "layer.0/SelfAttention/o"), hidden,
                               _norm(weights, f"{module}/layer.1"), shape, f"{name}.1")
    query = project(normed, "layer.1/EncDecAttention/q")
    attended = graph.node(
        "MultiHeadAttention",
        [query, f"past_key_values.{layer}.encoder.key", f"past_key_values.{layer}.encoder.value",
         "", "encoder_mask_int32"],
        [f"{name}.cross_attention"], domain=MICROSOFT, num_heads=shape.heads, scale=1.0,
    )
    hidden, normed = _residual(graph, project(attended, "layer.1/EncDecAttention/o"), hidden,
                               _norm(weights, f"{module}/layer.2"), shape, f"{name}.2")
    op, domain = _ACTIVATIONS[shape.activation]
    if shape.gated:
        gate = graph.node(op, [project(normed, "layer.2/DenseReluDense/wi_0")],
                          [f"{name}.gate"], domain=domain)
        active = graph.node("Mul", [gate, project(normed, "layer.2/DenseReluDense/wi_1")],
                            [f"{name}.active"])
    else:
        active = graph.node(op, [project(normed, "layer.2/DenseReluDense/wi")],
                            [f"{name}.active"], domain=domain)
    if layer + 1 < shape.layers:
        following_norm = _norm(weights, f"/decoder/block.{layer + 1}/layer.0")
    else:
        following_norm = weights.node_weight("/decoder/final_layer_norm/Mul_1")
    return _residual(graph, project(active, "layer.2/DenseReluDense/wo"), hidden, following_norm,
                     shape, f"layer{layer + 1}.0")


def _residual(graph: _GraphWriter, update: str, hidden: str, norm: np.ndarray, shape: StepShape,
              name: str) -> tuple[str, str]:
    """``hidden + update`` and its RMSNorm, in one fused op; returns (sum, normed)."""
    normed, total = f"{name}.normed", f"{name}.residual"
    graph.node("SkipSimplifiedLayerNormalization",
               [update, hidden, graph.constant(f"{name}.norm", norm)],
               [normed, "", "", total], domain=MICROSOFT, epsilon=shape.epsilon)
    return total, normed


def check_same_outputs(
    exported: Path, rewritten: Path, config: Mapping[str, Any],
    tolerance: float = SAME_OUTPUTS_TOLERANCE,
) -> float:
    """Run both graph files on random feeds (two batch sizes, cache lengths, padded encoder rows,
    one and several new tokens); return the largest |Δ| over every output.

    Raises:
        StepRewriteError: an output differs by more than ``tolerance`` times its scale.
    """
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for path in (exported, rewritten)]
    shape = StepShape.from_config(config)
    worst = 0.0
    for batch, past, source, new in ((1, 17, 9, 1), (3, 5, 6, 1), (2, 4, 7, 3)):
        feeds = _random_feeds(sessions[0], shape, batch, past, source, new,
                              int(config.get("vocab_size", 2)))
        names = [output.name for output in sessions[0].get_outputs()]
        expected, ours = (dict(zip(names, session.run(names, feeds))) for session in sessions)
        for output in names:
            difference = float(np.abs(expected[output] - ours[output]).max())
            scale = max(1.0, float(np.abs(expected[output]).max()))
            if not difference <= tolerance * scale:
                raise StepRewriteError(
                    f"The rewritten decoder step differs from the exported one in '{output}' "
                    f"by {difference:.3g} (batch {batch}, cache {past}, {new} new token(s)); "
                    "not used."
                )
            worst = max(worst, difference)
    return worst


def _random_feeds(session: Any, shape: StepShape, batch: int, past: int, source: int, new: int,
                  vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.ones((batch, source), np.int64)
    mask[0, source - 2:] = 0  # a padded encoder row
    feeds: dict[str, np.ndarray] = {
        "input_ids": rng.integers(0, vocab, (batch, new)).astype(np.int64),
        "encoder_attention_mask": mask,
    }
    for spec in session.get_inputs():
        if spec.name.startswith("past_key_values."):
            length = past if ".decoder." in spec.name else source
            feeds[spec.name] = rng.standard_normal(
                (batch, shape.heads, length, shape.head_size)).astype(np.float32)
    return feeds
