"""Read an ONNX graph's inputs and outputs into the manifest's ``GraphSpec``."""

from __future__ import annotations

from pathlib import Path

from engine.manifest import GraphSpec, TensorSpec
from export.dependencies import require


def graph_spec(model_path: Path, relative_name: str) -> GraphSpec:
    """Signature of the ONNX file at ``model_path``, recorded under ``relative_name``."""
    onnx = require("onnx")
    model = onnx.load(str(model_path), load_external_data=False)

    def specs(values) -> tuple[TensorSpec, ...]:
        result = []
        for value in values:
            tensor_type = value.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
            shape = tuple(
                dim.dim_param if dim.dim_param else int(dim.dim_value)
                for dim in tensor_type.shape.dim
            )
            result.append(TensorSpec(value.name, dtype, shape))
        return tuple(result)

    return GraphSpec(
        file=relative_name, inputs=specs(model.graph.input), outputs=specs(model.graph.output)
    )


def opset_of(model_path: Path) -> int:
    onnx = require("onnx")
    model = onnx.load(str(model_path), load_external_data=False)
    return max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
