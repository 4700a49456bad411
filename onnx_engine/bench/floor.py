"""The physical floor of a call: what this machine's arithmetic and memory allow at best.

floor = max(FLOPs / peak matmul rate, weight bytes / memory bandwidth), with both peaks measured
here, by the same benchmark run, on the same threads: a big MatMul graph built with
``onnx.helper`` run by ONNX Runtime (fp32, and after ``quantize_dynamic`` for int8), and a large
NumPy copy for bandwidth. Measured / floor says how much of the machine a contender leaves unused;
long sequences are compute-bound, single-token decode steps are bandwidth-bound.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.timing import time_repeated
from onnx_engine.bench.errors import BenchError
from onnx_engine.bench.graph_cost import GraphCost

_MATMUL_SIZE = 2048  # 17 GFLOP per call: long enough to time, small enough for seconds
_COPY_BYTES = 256 * 2**20


@dataclass(frozen=True)
class MachinePeaks:
    """Best rates measured on this machine: FLOP/s fp32, int8 op/s, copy bytes/s."""

    fp32_flops: float
    int8_ops: float | None
    bandwidth: float

    @classmethod
    def best(cls, measured: list[MachinePeaks]) -> MachinePeaks:
        """The highest of each rate over several measurements (noise only ever lowers a peak)."""
        int8 = [peaks.int8_ops for peaks in measured if peaks.int8_ops]
        return cls(max(p.fp32_flops for p in measured), max(int8) if int8 else None,
                   max(p.bandwidth for p in measured))

    def floor_seconds(self, cost: GraphCost) -> float:
        """The least time one call of that cost can take here."""
        int8_rate = self.int8_ops or self.fp32_flops
        compute = cost.float_flops / self.fp32_flops + cost.int8_ops / int8_rate
        return max(compute, cost.weight_bytes / self.bandwidth)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fp32_gflops"] = self.fp32_flops / 1e9
        data["int8_gops"] = self.int8_ops / 1e9 if self.int8_ops else None
        data["bandwidth_gb_s"] = self.bandwidth / 1e9
        return data


def measure_peaks(threads: int, repeats: int = 5) -> MachinePeaks:
    """Measure the fp32 and int8 matmul peaks and the copy bandwidth (about 2 s).

    Raises:
        BenchError: the ``onnx`` package (needed to build the graph) is not installed.
    """
    with tempfile.TemporaryDirectory() as scratch:
        fp32_path = Path(scratch) / "matmul.onnx"
        _write_matmul_model(fp32_path, _MATMUL_SIZE)
        flops = 2.0 * _MATMUL_SIZE**3
        fp32 = flops / _time_model(fp32_path, threads, repeats)
        int8 = None
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            from export.quiet import quiet_library_output

            int8_path = Path(scratch) / "matmul.int8.onnx"
            with quiet_library_output():  # its advice to pre-process does not apply to one MatMul
                quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
            int8 = flops / _time_model(int8_path, threads, repeats)
        except ImportError:
            pass
    return MachinePeaks(fp32, int8, measure_bandwidth(repeats))


def measure_bandwidth(repeats: int = 5, nbytes: int = _COPY_BYTES) -> float:
    """Copy bandwidth in bytes/s (read + write) of a buffer far larger than the caches."""
    source = np.ones(nbytes // 4, dtype=np.float32)
    target = np.empty_like(source)
    seconds = time_repeated(lambda: np.copyto(target, source), repeats)
    return 2.0 * source.nbytes / seconds


def _write_matmul_model(path: Path, size: int) -> None:
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as error:
        raise BenchError(
            "Measuring the matmul peak needs the 'onnx' package: pip install -c constraints.txt "
            "'onnx-engine[export]' (or run with --no-floor)."
        ) from error
    weight = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "peak_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    # IR version 10 (onnx 1.16): new enough for opset 17, old enough for any ORT >= 1.20.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, str(path))


def _time_model(path: Path, threads: int, repeats: int) -> float:
    from onnx_engine.bench.contenders.base import ort_session

    session = ort_session(path, threads)
    feeds = {"x": np.random.default_rng(1).standard_normal((_MATMUL_SIZE,) * 2, dtype=np.float32)}
    return time_repeated(lambda: session.run(None, feeds), repeats, warmup=2)
