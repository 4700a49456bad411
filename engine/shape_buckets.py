"""Static-shape buckets for OpenVINO: one-row calls padded to a power-of-two length and run on a
model compiled for exactly that shape.

Measured on the real MiniLM classifier (benchmarks/results/openvino-shape-buckets.md): a model
compiled for a static [1, S] runs 14-24% faster than the dynamic one at the same shape, and still
10-21% faster after padding a request to the next power of two (40 tokens in a 64 bucket). At
8 and more rows the padding costs more than static shapes save (a batch of 8 x 40 in 8 x 64:
11-17% slower; 5 rows in an 8-row bucket: 31-35% slower), and a static sequence with a dynamic
batch saves only 2-5%; so only single-row calls are bucketed, and batches run dynamic.

Padding is exact for the real tokens: padded positions get attention mask 0 (keys never attended
to) and sit after the real ones (positions unchanged); outputs are cut back to the real length
on every axis the manifest names with the input's sequence symbol.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from engine.manifest import GraphSpec

MASK = "attention_mask"
SMALLEST_BUCKET = 8


def sequence_symbol(spec: GraphSpec | None) -> str | None:
    """The symbol of the sequence axis where ``spec`` can be bucketed, else None.

    Bucketable: every input is [batch, sequence] with the same two symbols, one of the inputs is
    the attention mask (padding must be maskable), and every output axis is a number, the batch
    or the sequence symbol (so the outputs can be cut back).
    """
    if spec is None or MASK not in spec.input_names:
        return None
    shapes = {spec_input.shape for spec_input in spec.inputs}
    if len(shapes) != 1:
        return None
    (shape,) = shapes
    if len(shape) != 2 or not all(isinstance(axis, str) for axis in shape):
        return None
    allowed = set(shape)
    if any(isinstance(axis, str) and axis not in allowed
           for output in spec.outputs for axis in output.shape):
        return None
    return str(shape[1])


def bucket_length(length: int) -> int:
    """The bucket a row of ``length`` tokens runs in: the next power of two, at least 8."""
    return max(SMALLEST_BUCKET, 1 << (length - 1).bit_length())


class ShapeBuckets:
    """Compiled static models per sequence bucket, made on first use, at most ``limit`` kept.

    ``compile_for(length)`` compiles the graph for [1, length]; the least recently used bucket
    is dropped when a new one would exceed ``limit`` (each holds its own copy of the weights:
    35-60 MB for MiniLM in bf16/int8).
    """

    def __init__(self, spec: GraphSpec, symbol: str, limit: int,
                 compile_for: Callable[[int], Any]) -> None:
        self._symbol = symbol
        self._cut_axes = {output.name: [axis for axis, name in enumerate(output.shape)
                                        if name == symbol] for output in spec.outputs}
        self._limit = limit
        self._compile_for = compile_for
        self._compiled: OrderedDict[int, Any] = OrderedDict()

    def applies(self, feeds: Mapping[str, np.ndarray]) -> bool:
        """Whether these feeds are one row that a bucket longer than it would run."""
        mask = feeds.get(MASK)
        return mask is not None and mask.ndim == 2 and mask.shape[0] == 1

    def compiled(self, length: int) -> Any:
        """The compiled model of ``length``'s bucket (compiled now if it is new)."""
        bucket = bucket_length(length)
        if bucket in self._compiled:
            self._compiled.move_to_end(bucket)
            return self._compiled[bucket]
        model = self._compile_for(bucket)
        self._compiled[bucket] = model
        while len(self._compiled) > self._limit:
            self._compiled.popitem(last=False)
        return model

    @property
    def buckets(self) -> tuple[int, ...]:
        """The sequence lengths compiled now, least recently used first."""
        return tuple(self._compiled)

    @staticmethod
    def padded(feeds: Mapping[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
        """``feeds`` zero-padded on the right to ``length`` (mask 0: never attended to)."""
        return {name: np.pad(value, ((0, 0), (0, length - value.shape[1])))
                for name, value in feeds.items()}

    def cut(self, name: str, value: np.ndarray, length: int) -> np.ndarray:
        """Output ``name`` cut back to ``length`` on its sequence axes."""
        index = tuple(slice(0, length) if axis in self._cut_axes.get(name, ()) else slice(None)
                      for axis in range(value.ndim))
        return np.ascontiguousarray(value[index])
