"""FLOPs and weight bytes of one call of an ONNX graph, for the physical floor.

Weight bytes are the sizes of the initializers that matrix products read (every call streams all
of them from memory once; embeddings are left out, as a lookup reads only a few rows). FLOPs need
the real shapes of each product's inputs, which depend on batch, sequence and cache lengths and on
reshapes the file does not spell out; instead of re-deriving them, the graph is run once with
every product's input and output added as graph outputs, and the shapes are read off the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnx_engine.bench.errors import BenchError

# Matrix products: op -> arithmetic kind. Integer products run on MLAS's int8 kernels.
MATMUL_OPS = {
    "MatMul": "float", "Gemm": "float", "FusedMatMul": "float",
    "MatMulInteger": "int8", "DynamicQuantizeMatMul": "int8", "MatMulIntegerToFloat": "int8",
    # 4-bit weights computed on int8 activations (accuracy level 4, the int4 variant's)
    "MatMulNBits": "int8",
}
# Stored inputs besides the weight that a product streams on every call: MatMulNBits' block scales.
_EXTRA_WEIGHT_INPUTS = {"MatMulNBits": (2,)}
# Ops that hide products inside them; a graph with these is under-counted and says so.
_OPAQUE_OPS = ("Attention", "MultiHeadAttention", "QAttention", "QOrderedAttention")
# Ops between a stored weight and the product that reads it (no data volume of their own).
_WEIGHT_PASS_THROUGH = ("Transpose", "Cast", "Identity", "DequantizeLinear", "Reshape")


@dataclass(frozen=True)
class GraphCost:
    """Work of one call: float FLOPs, int8 ops, bytes of weights read, and what was not counted."""

    float_flops: float
    int8_ops: float
    weight_bytes: float
    uncounted_ops: tuple[str, ...] = ()

    def __add__(self, other: GraphCost) -> GraphCost:
        return GraphCost(
            self.float_flops + other.float_flops, self.int8_ops + other.int8_ops,
            self.weight_bytes + other.weight_bytes,
            tuple(sorted(set(self.uncounted_ops) | set(other.uncounted_ops))),
        )

    def times(self, count: int) -> GraphCost:
        return GraphCost(self.float_flops * count, self.int8_ops * count,
                         self.weight_bytes * count, self.uncounted_ops)


class GraphCostCounter:
    """Counts costs of graph files; keeps one probe session per file for repeated shapes."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._probes: dict[Path, _Probe] = {}

    def count(self, graph: Path, feeds: Mapping[str, np.ndarray]) -> GraphCost:
        """Cost of one call of ``graph`` on ``feeds``.

        Raises:
            BenchError: the ``onnx`` package is missing or the probe run fails.
        """
        graph = Path(graph)
        if graph not in self._probes:
            self._probes[graph] = _Probe(graph, self._threads)
        return self._probes[graph].count(feeds)


class _Probe:
    def __init__(self, graph: Path, threads: int) -> None:
        try:
            import onnx
        except ImportError as error:
            raise BenchError(
                "Counting FLOPs needs the 'onnx' package: pip install -c constraints.txt "
                "'onnx-engine[export]' (or run with --no-floor)."
            ) from error
        import onnxruntime as ort

        model = onnx.load(str(graph))
        nodes = [node for node in model.graph.node if node.op_type in MATMUL_OPS]
        initializers = {tensor.name: tensor for tensor in model.graph.initializer}
        producers = {output: node for node in model.graph.node for output in node.output}
        stored = {_stored_weight(node, initializers, producers) for node in nodes}
        stored |= {node.input[index] for node in nodes
                   for index in _EXTRA_WEIGHT_INPUTS.get(node.op_type, ())
                   if index < len(node.input) and node.input[index] in initializers}
        self.weight_bytes = float(sum(_nbytes(initializers[name]) for name in stored - {None}))
        self.uncounted = tuple(sorted(
            {n.op_type for n in model.graph.node if n.op_type in _OPAQUE_OPS}
        ))
        self.products = [(node.op_type, node.input[0], node.output[0], _gemm_trans_a(node))
                         for node in nodes]
        known = {value.name for value in model.graph.output} | set(initializers)
        known |= {value.name for value in model.graph.input}
        wanted = {name for _, a, out, _ in self.products for name in (a, out)} - known
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in sorted(wanted))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ORT's own pybind errors
            raise BenchError(f"Cannot probe shapes of '{graph}': {error}") from error
        self.inputs = [value.name for value in self.session.get_inputs()]
        self.constant_shapes = {name: tuple(tensor.dims) for name, tensor in initializers.items()}

    def count(self, feeds: Mapping[str, np.ndarray]) -> GraphCost:
        names = [output.name for output in self.session.get_outputs()]
        values = dict(zip(names, self.session.run(None, {n: feeds[n] for n in self.inputs})))
        values.update(feeds)
        shapes = {name: np.shape(value) for name, value in values.items()}
        totals = {"float": 0.0, "int8": 0.0}
        for op_type, a_name, out_name, trans_a in self.products:
            a_shape = shapes[a_name] if a_name in shapes else self.constant_shapes[a_name]
            inner = a_shape[-2] if trans_a else a_shape[-1]
            totals[MATMUL_OPS[op_type]] += 2.0 * float(np.prod(shapes[out_name])) * inner
        return GraphCost(totals["float"], totals["int8"], self.weight_bytes, self.uncounted)


def _stored_weight(node: Any, initializers: dict, producers: dict) -> str | None:
    """The initializer a product's second input is read from, through transposes and casts."""
    name = node.input[1]
    for _ in range(4):
        if name in initializers:
            return name
        producer = producers.get(name)
        if producer is None or producer.op_type not in _WEIGHT_PASS_THROUGH:
            return None
        name = producer.input[0]
    return None


def _gemm_trans_a(node: Any) -> bool:
    return any(attr.name == "transA" and attr.i for attr in node.attribute)


def _nbytes(tensor: Any) -> int:
    import onnx

    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(np.prod(tensor.dims)) * itemsize
