"""T5's decoder step rewritten into fused ops (export/variants/t5_step.py) and the int4 variant
built on it (export/variants/int4.py): the rewrite computes what the exported step computes, in
the engine's own decoding loop too; a rewrite that differs, or a model it does not understand,
is refused; 4-bit packing is the layout MatMulNBits reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper
from transformers.models.t5.modeling_t5 import T5Attention

from engine import Seq2SeqLM
from engine.manifest import ArtifactManifest
from engine.options import RuntimeOptions
from engine.variants.records import FP32, FUSED, INT4, INT8, TARGET_CPU
from export.variants.int4 import INT4_BLOCK_SIZE, pack_matmuls
from export.variants.optimize import OptimizeSettings, VariantRecipe, optimize_artifact
from export.variants.t5_step import (
    StepRewriteError,
    StepShape,
    check_same_outputs,
    compact_step,
    decoder_step_graph,
    relative_bucket,
)

SOURCES = ["translate English to German: the house is small.", "a", "Numbers 7 8 9, symbols ! ?"]


def _config(exported) -> dict:
    return json.loads((exported.artifact / "config.json").read_text())


def _step_file(exported) -> Path:
    return exported.artifact / ArtifactManifest.read(exported.artifact).graphs[
        "decoder_with_past"].file


def test_rewritten_step_computes_the_exported_step_in_a_tenth_of_the_ops(any_t5, tmp_path):
    source = _step_file(any_t5)
    exported = onnx.load(str(source))
    rewritten = decoder_step_graph(exported, _config(any_t5))
    onnx.save(rewritten, str(tmp_path / "step.onnx"))
    # several new tokens, padded encoder rows, two cache lengths: all within fp32 rounding
    assert check_same_outputs(source, tmp_path / "step.onnx", _config(any_t5)) < 1e-4
    assert len(rewritten.graph.node) * 10 < len(exported.graph.node)
    ops = {node.op_type for node in rewritten.graph.node}
    assert {"MultiHeadAttention", "SkipSimplifiedLayerNormalization"} <= ops
    assert [value.name for value in rewritten.graph.input] == [
        value.name for value in exported.graph.input]


def test_a_rewrite_that_differs_from_the_exported_step_is_refused(t5_v1_1, tmp_path):
    source = _step_file(t5_v1_1)
    rewritten = decoder_step_graph(onnx.load(str(source)), _config(t5_v1_1))
    head = next(tensor for tensor in rewritten.graph.initializer if tensor.name == "lm_head")
    head.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(head) * 1.01, "lm_head"))
    onnx.save(rewritten, str(tmp_path / "step.onnx"))
    with pytest.raises(StepRewriteError, match="differs from the exported one in 'logits'"):
        check_same_outputs(source, tmp_path / "step.onnx", _config(t5_v1_1))


def test_relative_buckets_are_transformers_own():
    distances = torch.arange(0, 400)
    for buckets, max_distance in ((32, 128), (8, 16)):
        expected = T5Attention._relative_position_bucket(
            -distances, bidirectional=False, num_buckets=buckets, max_distance=max_distance)
        ours = [relative_bucket(int(d), buckets, max_distance) for d in distances]
        assert ours == expected.tolist()


def test_models_the_rewrite_does_not_know_are_refused_by_name():
    with pytest.raises(StepRewriteError, match="for T5 / mT5 models, not 'bart'"):
        StepShape.from_config({"model_type": "bart"})
    t5 = {"model_type": "t5", "num_layers": 2, "num_heads": 4, "d_kv": 8}
    with pytest.raises(StepRewriteError, match="no fused op for the activation 'silu'"):
        StepShape.from_config({**t5, "feed_forward_proj": "gated-silu", "dense_act_fn": "silu"})
    assert StepShape.from_config({**t5, "feed_forward_proj": "gated-gelu"}).gated


def test_an_encoder_is_passed_through_unrewritten(t5_v1_1):
    encoder = t5_v1_1.artifact / ArtifactManifest.read(t5_v1_1.artifact).graphs["encoder"].file
    with compact_step(encoder, _config(t5_v1_1)) as (graph, model, made_with):
        assert graph == encoder and made_with == {}
        assert [value.name for value in model.graph.input] == ["input_ids", "attention_mask"]


def _rewrite_only(source: Path, target: Path, config) -> dict:
    with compact_step(source, config) as (graph, _, made_with):
        shutil.copyfile(graph, target)
    return made_with


@pytest.fixture(scope="module", params=["t5", "t5-v1_1"])
def rewritten_t5(request, t5_factory, tmp_path_factory):
    """A tiny T5 artifact with the rewritten step as an fp32 variant (under the name fused,
    whose gate holds it to fp32's logits)."""
    exported = t5_factory(request.param)
    artifact = tmp_path_factory.mktemp(f"rewritten-{request.param}") / "artifact"
    shutil.copytree(exported.artifact, artifact)
    manifest = optimize_artifact(
        OptimizeSettings(artifact=artifact, variants=(FUSED,), timing_runs=1, quiet=True),
        recipes={FUSED: VariantRecipe(TARGET_CPU, _rewrite_only)},
    )
    return artifact, manifest


def test_the_engine_decodes_the_same_tokens_through_the_rewritten_step(rewritten_t5):
    artifact, manifest = rewritten_t5
    record = manifest.variants[FUSED]
    assert record.passed, record.reason
    assert record.made_with["decoder_with_past"]["rewritten_step"]["nodes"] < 100
    exported, rewritten = (Seq2SeqLM.load(artifact, options=RuntimeOptions(provider="cpu",
                                                                           variant=name))
                           for name in (FP32, FUSED))
    assert rewritten.variant == FUSED
    for beams in (1, 3):  # beam search reorders the cache between steps
        expected = exported.generate(SOURCES, max_new_tokens=12, num_beams=beams)
        ours = rewritten.generate(SOURCES, max_new_tokens=12, num_beams=beams)
        assert [row.token_ids.tolist() for row in ours] == [
            row.token_ids.tolist() for row in expected]


def _one_matmul(weight: np.ndarray) -> onnx.ModelProto:
    rows, columns = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, rows])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, columns])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("shape", [(32, 8), (64, 48), (40, 5)])  # 40: a partial last block
def test_4bit_packing_is_the_layout_matmulnbits_reads(shape):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal(shape).astype(np.float32)
    model = _one_matmul(weight)
    assert pack_matmuls(model, accuracy_level=0) == 1  # fp32 compute: exact to the 4-bit weights
    assert [node.op_type for node in model.graph.node] == ["MatMulNBits"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((3, shape[0])).astype(np.float32)
    # the 4-bit weights by hand: per block of 32 rows and per column, max |w| -> 7
    blocks = -(-shape[0] // INT4_BLOCK_SIZE)
    padded = np.zeros((blocks * INT4_BLOCK_SIZE, shape[1]), np.float32)
    padded[: shape[0]] = weight
    grouped = padded.reshape(blocks, INT4_BLOCK_SIZE, shape[1])
    scales = np.abs(grouped).max(axis=1, keepdims=True) / 7
    dequantized = (np.rint(grouped / scales) * scales).reshape(-1, shape[1])[: shape[0]]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ dequantized, atol=1e-5)


def test_int4_variant_is_4bit_decoders_over_an_int8_encoder(t5_v1_1, tmp_path):
    artifact = tmp_path / "artifact"
    shutil.copytree(t5_v1_1.artifact, artifact)
    # The tiny random T5 is too small for 4 bits (top-1 ~70%): the gate is opened to load it.
    manifest = optimize_artifact(OptimizeSettings(
        artifact=artifact, variants=(INT4,), timing_runs=1, quiet=True,
        gate_overrides=("int4.min_agreement=0", "int4.flip_margin=none"),
    ))
    record = manifest.variants[INT4]
    assert record.passed, record.reason
    made = record.made_with
    assert made["encoder"]["method"].endswith("quantize_dynamic")
    assert made["decoder"]["matmuls_4bit"] > 0 and made["decoder_with_past"]["matmuls_4bit"] > 0
    assert "rewritten_step" in made["decoder_with_past"]
    vocab = _config(t5_v1_1)["vocab_size"]
    tables = {}
    for role in ("decoder", "decoder_with_past"):
        graph = onnx.load(str(artifact / record.graphs[role])).graph
        weights = {tensor.name for tensor in graph.initializer}
        assert not any(node.op_type == "MatMul" and node.input[1] in weights
                       for node in graph.node)  # every weight matmul 4-bit (or the int8 head)
        # no fp32 copy of the LM head or the embedding table left
        tables[role] = sorted(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
                              for tensor in graph.initializer
                              if len(tensor.dims) >= 2 and vocab in tensor.dims)
    # the first step: the embedding table (8-bit rows) and the LM head in int8
    assert tables["decoder"] == ["int8", "uint8"]
    # the step: 8-bit embedding rows, the 4-bit ranking head (packed nibbles) and the float16
    # rows that re-score its top tokens
    assert tables["decoder_with_past"] == ["float16", "uint8", "uint8"]
    assert made["decoder_with_past"]["lm_head"]["candidates"] == 32
    model = Seq2SeqLM.load(artifact, options=RuntimeOptions(provider="cpu", variant=INT4))
    exported = Seq2SeqLM.load(artifact, options=RuntimeOptions(provider="cpu", variant=FP32))
    assert model.variant == INT4
    ids = np.zeros((1, 1), np.int64)
    ours = model.decoder_logits(SOURCES[:1], ids)[0, 0]
    expected = exported.decoder_logits(SOURCES[:1], ids)[0, 0]
    # close to fp32, not equal to it
    cosine = float(ours @ expected / np.linalg.norm(ours) / np.linalg.norm(expected))
    assert 0.9 < cosine < 1 - 1e-6
    assert all(row.token_ids.size for row in model.generate(SOURCES, max_new_tokens=6))


def test_int4_is_offered_for_t5_only(distilbert, copy_artifact):
    from engine.errors import InputError

    with pytest.raises(InputError, match="'int4' variant is not made for 'text-classification'"):
        optimize_artifact(OptimizeSettings(artifact=copy_artifact(distilbert.artifact),
                                           variants=(INT4,), quiet=True))


def test_the_int8_step_is_quantized_from_the_rewrite(t5_v1_1, tmp_path):
    artifact = tmp_path / "artifact"
    shutil.copytree(t5_v1_1.artifact, artifact)
    manifest = optimize_artifact(OptimizeSettings(artifact=artifact, variants=(INT8,),
                                                  timing_runs=1, quiet=True))
    record = manifest.variants[INT8]
    assert record.passed, record.reason
    assert "rewritten_step" in record.made_with["decoder_with_past"]
    assert "rewritten_step" not in record.made_with["decoder"]
    step = onnx.load(str(artifact / record.graphs["decoder_with_past"]))
    assert sum(node.op_type == "MultiHeadAttention" for node in step.graph.node) == 4  # 2 layers


def test_the_bench_floor_counts_4bit_weights_and_their_scales(tmp_path):
    from onnx_engine.bench.graph_cost import GraphCostCounter

    model = _one_matmul(np.ones((64, 48), np.float32))
    pack_matmuls(model)
    onnx.save(model, str(tmp_path / "int4.onnx"))
    cost = GraphCostCounter(threads=1).count(tmp_path / "int4.onnx",
                                             {"x": np.ones((2, 64), np.float32)})
    # 48 columns x 2 blocks: 16 bytes of packed values and one fp32 scale per block
    assert cost.weight_bytes == 48 * 2 * 16 + 48 * 2 * 4
    assert cost.int8_ops == 2 * 2 * 48 * 64
