"""SmoothQuant scaling: the scaled graph computes what the source does, and int8 of it loses less
where an activation has outlier channels (what trained encoders have and random ones lack)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine import Classifier
from export.check_set import check_texts
from export.variants.quantize import QuantizeSettings, quantize_int8
from export.variants.smooth_quant import QUIET_CHANNEL_FLOOR, smooth_graph

WIDTH = 32
OUTLIER = 5  # the channel that is 60x the others, as in a trained BERT's LayerNorm output


def _outlier_graph(path, seed: int = 0) -> None:
    """x -> Relu -> two matmuls (Q and K-like, one shared input) and a third matmul on one of
    their outputs: two activations to scale, one read twice."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 0.2, (WIDTH, WIDTH)).astype(np.float32) for _ in range(3)]
    # The outlier channel's weights are small, as in trained models: the product needs the
    # other channels' values, which one activation scale per tensor crushes.
    weights[0][OUTLIER] /= 60
    weights[1][OUTLIER] /= 60
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w0"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["h", "w1"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["q", "w2"], ["y"], name="out_proj"),
    ]
    graph = helper.make_graph(
        nodes, "outliers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", WIDTH])
         for name in ("k", "y")],
        [numpy_helper.from_array(weight, f"w{index}") for index, weight in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))


def _feeds(count: int, seed: int, quiet: int | None = None) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        x = np.abs(rng.normal(0, 1, (16, WIDTH))).astype(np.float32)
        x[:, OUTLIER] *= 60
        if quiet is not None:
            x[:, quiet] = 0
        feeds.append({"x": x})
    return feeds


def _run(path, feeds) -> list[list[np.ndarray]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [session.run(None, feed) for feed in feeds]


def _largest_error(path, reference, feeds) -> float:
    return max(float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
               for gots, wants in zip(_run(path, feeds), _run(reference, feeds))
               for got, want in zip(gots, wants))


def test_scaled_graph_computes_the_same_with_one_mul_per_shared_input(tmp_path):
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    _outlier_graph(source)
    made = smooth_graph(source, smoothed, _feeds(8, seed=1))
    assert made["smoothed_inputs"] == 2 and made["smoothed_matmuls"] == 3
    model = onnx.load(str(smoothed))
    assert [node.op_type for node in model.graph.node].count("Mul") == 2
    # Unseen inputs: the scaling is exact algebra, so only float rounding differs.
    assert _largest_error(smoothed, source, _feeds(4, seed=2)) < 1e-5


def test_int8_of_the_scaled_graph_loses_less_on_outlier_channels(tmp_path):
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    _outlier_graph(source)
    smooth_graph(source, smoothed, _feeds(8, seed=1))
    errors = {}
    for name, graph in (("plain", source), ("smoothed", smoothed)):
        quantized = tmp_path / f"{name}.int8.onnx"
        quantize_int8(graph, quantized, QuantizeSettings())
        errors[name] = _largest_error(quantized, source, _feeds(4, seed=3))
    assert errors["smoothed"] < errors["plain"] / 3, errors


def test_a_channel_quiet_in_calibration_keeps_a_bounded_inverse_scale(tmp_path):
    """A channel that is zero on every calibration input would get a near-zero scale; one value
    there at run time would then be multiplied by its huge inverse and wreck the int8 range."""
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    _outlier_graph(source)
    quiet = 7
    smooth_graph(source, smoothed, _feeds(8, seed=1, quiet=quiet))
    model = onnx.load(str(smoothed))
    inverses = [numpy_helper.to_array(tensor) for tensor in model.graph.initializer
                if tensor.name.endswith("smooth_quant_inverse")]
    for inverse in inverses:
        others = np.delete(inverse, quiet)
        assert inverse[quiet] <= others.max() / QUIET_CHANNEL_FLOOR ** 0.8 + 1e-6
    # ... and a value in that channel at run time still comes out right in fp32.
    assert _largest_error(smoothed, source, _feeds(4, seed=4)) < 1e-5


def test_a_real_encoder_graph_keeps_its_outputs(classifier_factory, tmp_path):
    """On an exported DistilBERT: Q, K and V share one scaled input, and the logits stay fp32's."""
    exported = classifier_factory("distilbert-2")
    classifier = Classifier.load(exported.artifact, provider="cpu", variant="fp32")
    texts = check_texts(classifier.tokenizer.max_length)[:8]
    feeds = [classifier.session.select_inputs(classifier.tokenizer.encode([text]).feeds())
             for text in texts]
    source, smoothed = exported.artifact / "model.onnx", tmp_path / "smoothed.onnx"
    made = smooth_graph(source, smoothed, feeds)
    layers = json.loads((exported.checkpoint / "config.json").read_text())["n_layers"]
    # Per layer: QKV (3 matmuls, one input), attention output, FFN up, FFN down.
    assert made["smoothed_matmuls"] - made["smoothed_inputs"] >= 2 * layers
    batch = [classifier.session.select_inputs(classifier.tokenizer.encode(texts).feeds())]
    (got,), (want,) = _run(smoothed, batch)[0][:1], _run(source, batch)[0][:1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_alpha_moves_the_scale_between_activation_and_weight(tmp_path, alpha):
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    _outlier_graph(source)
    feeds = _feeds(8, seed=1)
    made = smooth_graph(source, smoothed, feeds, alpha=alpha)
    assert made["smooth_quant_alpha"] == alpha
    model = onnx.load(str(smoothed))
    inverse = next(numpy_helper.to_array(tensor) for tensor in model.graph.initializer
                   if tensor.name == "w0/smooth_quant_inverse")
    # The outlier channel is divided the most: its share of the range shrinks by its scale.
    assert int(np.argmin(inverse)) == OUTLIER


def test_a_graph_without_initializer_weights_is_left_as_it_is(tmp_path):
    """A matmul reading its weight through a Transpose (T5's tied LM head) is not scaled: the
    search then skips the scaled way instead of repeating the plain one."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 1, (WIDTH, WIDTH)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["w"], ["wt"], name="transpose"),
         helper.make_node("MatMul", ["x", "wt"], ["y"], name="head")],
        "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])], [weight],
    )
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), str(source))
    made = smooth_graph(source, smoothed, _feeds(2, seed=1))
    assert made["smoothed_inputs"] == 0 and made["smoothed_matmuls"] == 0
    assert [node.op_type for node in onnx.load(str(smoothed)).graph.node] == ["Transpose", "MatMul"]


def test_a_weight_shared_across_layers_keeps_one_scaled_copy(tmp_path):
    """ALBERT reads each layer's weights in every layer: the inputs of one weight share its
    scales, so the scaled graph holds one copy of it (a copy per layer would multiply the int8
    file's size by the layer count)."""
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.2, (WIDTH, WIDTH)).astype(np.float32)
    shared[OUTLIER] /= 60
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h1"], name="relu1"),
         helper.make_node("MatMul", ["h1", "w"], ["a"], name="layer1"),
         helper.make_node("Relu", ["a"], ["h2"], name="relu2"),
         helper.make_node("MatMul", ["h2", "w"], ["y"], name="layer2")],
        "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])],
        [numpy_helper.from_array(shared, "w")],
    )
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), str(source))
    made = smooth_graph(source, smoothed, _feeds(8, seed=1))
    assert made["smoothed_inputs"] == 2 and made["smoothed_matmuls"] == 2
    weights = [tensor for tensor in onnx.load(str(smoothed)).graph.initializer
               if len(tensor.dims) == 2]
    assert [tensor.name for tensor in weights] == ["w/smoothed"]
    assert _largest_error(smoothed, source, _feeds(4, seed=2)) < 1e-5


def test_nodes_without_names_are_scaled_too(tmp_path):
    """ONNX allows empty node names: matmuls are told apart by their output tensors."""
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    _outlier_graph(source)
    model = onnx.load(str(source))
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, str(source))
    made = smooth_graph(source, smoothed, _feeds(8, seed=1))
    assert made["smoothed_inputs"] == 2 and made["smoothed_matmuls"] == 3
    assert _largest_error(smoothed, source, _feeds(4, seed=2)) < 1e-5


def test_an_input_silent_in_calibration_is_not_scaled(tmp_path):
    """All zeros on every calibration feed (a Relu that never fired there) give no ranges to
    scale by: left as it is rather than divided by near-zero scales."""
    source, smoothed = tmp_path / "source.onnx", tmp_path / "smoothed.onnx"
    _outlier_graph(source)
    silent = [{"x": -np.abs(feed["x"])} for feed in _feeds(4, seed=1)]  # Relu(x) = 0
    made = smooth_graph(source, smoothed, silent)
    assert made["smoothed_inputs"] == 0 and made["smoothed_matmuls"] == 0  # h and q are zeros
    assert "Mul" not in [node.op_type for node in onnx.load(str(smoothed)).graph.node]
    assert _largest_error(smoothed, source, _feeds(2, seed=2)) == 0
