"""The int4 step's LM head (export/variants/head_rescoring.py): a 4-bit head ranks the vocabulary
and the top candidates' logits are re-scored from float16 rows, so the decisions greedy and beam
search make are the fp32 head's even where the 4-bit ranking alone would change them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from export.errors import ExportError
from export.variants.head_rescoring import HEAD_BLOCK_SIZE, rescore_head_candidates
from export.variants.int4 import pack_matmuls

HIDDEN, VOCAB = 64, 3000


def _head_graph(weight: np.ndarray, output: str = "logits") -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["hidden", "lm_head"], [output], name="head")], "g",
        [helper.make_tensor_value_info("hidden", onnx.TensorProto.FLOAT, [None, None, HIDDEN])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, [None, None, VOCAB])],
        [numpy_helper.from_array(weight, "lm_head")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def _run(model: onnx.ModelProto, hidden: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"hidden": hidden})[0]


def test_top_candidates_get_the_fp32_heads_logits_where_4_bits_alone_change_the_choice():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((HIDDEN, VOCAB)).astype(np.float32)
    hidden = rng.standard_normal((8, 5, HIDDEN)).astype(np.float32)  # batch 8, 5 positions
    exact = hidden @ weight
    four_bit_only = _head_graph(weight)
    pack_matmuls(four_bit_only, block_sizes={"lm_head": HEAD_BLOCK_SIZE})
    rescored = _head_graph(weight)
    name, made = rescore_head_candidates(rescored, candidates=16)
    assert name == "lm_head" and made["candidates"] == 16 and made["rows"] == "float16"
    assert pack_matmuls(rescored, block_sizes={name: HEAD_BLOCK_SIZE}) == 1
    approximate, ours = _run(four_bit_only, hidden), _run(rescored, hidden)
    # the test means something: 4-bit logits alone pick another token somewhere
    assert (approximate.argmax(-1) != exact.argmax(-1)).any()
    np.testing.assert_array_equal(ours.argmax(-1), exact.argmax(-1))
    # the 4-bit ranking's 16 best tokens are re-scored to float16 rounding of the weights; every
    # other logit is the 4-bit one
    ranked = np.argsort(-approximate, axis=-1)
    top, rest = ranked[..., :16], ranked[..., 16:]
    np.testing.assert_allclose(np.take_along_axis(ours, top, -1),
                               np.take_along_axis(exact, top, -1), rtol=2e-3, atol=2e-2)
    np.testing.assert_array_equal(np.take_along_axis(ours, rest, -1),
                                  np.take_along_axis(approximate, rest, -1))


def test_a_graph_without_an_lm_head_is_refused_by_name():
    weight = np.ones((HIDDEN, VOCAB), np.float32)
    with pytest.raises(ExportError, match=r"no LM head .* writes 'logits'"):
        rescore_head_candidates(_head_graph(weight, output="scores"))
