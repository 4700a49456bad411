"""The hand-serialized Gather graph that moves KV-cache rows on the device (engine/row_gather.py).

The engine writes the graph's protobuf bytes itself because it may not import ``onnx``; here the
bytes must equal what ``onnx.helper`` + ``SerializeToString`` write for the same graph, pass
``onnx.checker``'s full check, and pick exactly the rows NumPy indexing picks, for every cache
dtype the variants produce (fp32, fp16) and bf16, through IO binding on the CPU provider.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from engine.errors import OnnxEngineError
from engine.options import RuntimeOptions
from engine.row_gather import (
    IR_VERSION,
    OPSET,
    ROWS_INPUT,
    DeviceRowGather,
    entry_names,
    gather_rows_model,
    take_rows_on_host,
)
from engine.session import EngineSession

SIGNATURES = [
    ((TensorProto.FLOAT, 4),),
    ((TensorProto.FLOAT16, 4), (TensorProto.FLOAT16, 4)),
    ((TensorProto.FLOAT, 4), (TensorProto.FLOAT16, 3), (TensorProto.BFLOAT16, 1),
     (TensorProto.INT64, 2)),
]


def _reference_model(signature) -> bytes:
    inputs, outputs = entry_names(len(signature))
    nodes = [
        helper.make_node("Gather", [data, ROWS_INPUT], [out], name=f"gather_{out}", axis=0)
        for data, out in zip(inputs, outputs)
    ]
    graph = helper.make_graph(
        nodes,
        "gather_rows",
        [helper.make_tensor_value_info(ROWS_INPUT, TensorProto.INT64, ["n"])]
        + [helper.make_tensor_value_info(name, kind, [None] * rank)
           for name, (kind, rank) in zip(inputs, signature)],
        [helper.make_tensor_value_info(name, kind, ["n"] + [None] * (rank - 1))
         for name, (kind, rank) in zip(outputs, signature)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    return model.SerializeToString()


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: f"{len(s)}-entries")
def test_hand_serialized_graph_equals_onnx_helper_bytes(signature):
    ours = gather_rows_model(signature)
    assert ours == _reference_model(signature)
    onnx.checker.check_model(onnx.load_from_string(ours), full_check=True)


def _session() -> EngineSession:
    options = RuntimeOptions(provider="cpu", threads=1)
    return EngineSession(Path("owner"), options, model=gather_rows_model(((TensorProto.FLOAT, 1),)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_device_gather_picks_the_rows_numpy_picks(dtype):
    rng = np.random.default_rng(0)
    entries = {
        "past_key_values.0.decoder.key": rng.standard_normal((3, 2, 5, 4)).astype(dtype),
        "past_key_values.0.encoder.value": rng.standard_normal((3, 2, 7, 4)).astype(dtype),
    }
    rows = np.array([2, 2, 0, 1, 0, 2], dtype=np.int64)
    on_device = {name: ort.OrtValue.ortvalue_from_numpy(value) for name, value in entries.items()}
    moved = DeviceRowGather(_session())(on_device, rows)
    expected = take_rows_on_host(entries, rows)
    assert list(moved) == list(entries)
    for name, value in moved.items():
        assert isinstance(value, ort.OrtValue)
        assert value.numpy().dtype == dtype
        np.testing.assert_array_equal(value.numpy(), expected[name])


def test_a_value_without_rows_is_refused_clearly():
    scalar = ort.OrtValue.ortvalue_from_numpy(np.array(1.0, dtype=np.float32))
    with pytest.raises(OnnxEngineError, match="rank 0"):
        DeviceRowGather(_session())({"x": scalar}, np.array([0]))
