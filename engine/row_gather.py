"""Moving KV-cache rows (beam expansion and reordering) on the device the cache lives on.

Beam search repeats each input's cache rows ``num_beams`` times after the first step and picks
rows by index after every later step. On the plain path the cache is NumPy and fancy indexing
does it. On the bound path (:mod:`engine.io_binding`) the cache is ``OrtValue``s on the device:
indexing them on the host would copy the whole cache down and up again at every step. Here a tiny
ONNX graph, one ``Gather`` per cache entry, does it where the cache is, run through IO binding, so
only the row indices (one int64 per row) travel.

The engine may not import the ``onnx`` package, so the graph is serialized by hand: a handful of
protobuf fields, written in field-number order exactly as ``onnx.helper`` + ``SerializeToString``
write them (``tests/test_row_gather.py`` checks the bytes against ``onnx.helper``'s and runs
``onnx.checker`` on them). One graph is built per set of entry dtypes and ranks (fp32, fp16 and bf16
caches alike) and its session is kept for the life of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.errors import OnnxEngineError
from engine.io_binding import BoundGraphCall, DeviceValue, host_array
from engine.session import EngineSession

# ONNX TensorProto.DataType numbers of the ORT type names a cache entry can have.
ELEMENT_TYPES = {
    "tensor(float)": 1,
    "tensor(uint8)": 2,
    "tensor(int8)": 3,
    "tensor(uint16)": 4,
    "tensor(int16)": 5,
    "tensor(int32)": 6,
    "tensor(int64)": 7,
    "tensor(bool)": 9,
    "tensor(float16)": 10,
    "tensor(double)": 11,
    "tensor(uint32)": 12,
    "tensor(uint64)": 13,
    "tensor(bfloat16)": 16,
}
_INT64 = ELEMENT_TYPES["tensor(int64)"]
# Gather has had its present form since opset 13; IR version 8 (onnx 1.10) is read by every ONNX
# Runtime from 1.10 on.
OPSET = 13
IR_VERSION = 8
ROWS_INPUT = "rows"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text_field(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode("utf-8"))


def _value_info(name: str, element_type: int, dims: Sequence[str | None]) -> bytes:
    """ValueInfoProto{name, type: TypeProto{tensor_type{elem_type, shape}}}.

    Each dimension is named (``dim_param``) or, for ``None``, left unknown.
    """
    shape = b"".join(
        _bytes_field(1, b"" if dim is None else _text_field(2, dim)) for dim in dims
    )
    tensor = _int_field(1, element_type) + _bytes_field(2, shape)
    return _text_field(1, name) + _bytes_field(2, _bytes_field(1, tensor))


def _gather_node(data: str, output: str) -> bytes:
    """NodeProto{input: [data, rows], output, name, op_type: Gather, attribute: axis=0}."""
    axis = _text_field(1, "axis") + _int_field(3, 0) + _int_field(20, 2)  # type INT = 2
    return (
        _text_field(1, data) + _text_field(1, ROWS_INPUT) + _text_field(2, output)
        + _text_field(3, f"gather_{output}") + _text_field(4, "Gather") + _bytes_field(5, axis)
    )


def entry_names(count: int) -> tuple[list[str], list[str]]:
    """The graph's data input and output names for ``count`` entries."""
    return [f"in_{i}" for i in range(count)], [f"out_{i}" for i in range(count)]


def gather_rows_model(entries: Sequence[tuple[int, int]]) -> bytes:
    """A serialized ModelProto: output ``i`` = ``Gather(in_i, rows, axis=0)`` per entry.

    ``entries`` holds each input's (ONNX element type, rank); ``rows`` is int64 ``[n]`` and
    every dimension is dynamic.
    """
    inputs, outputs = entry_names(len(entries))
    graph = b"".join(_bytes_field(1, _gather_node(i, o)) for i, o in zip(inputs, outputs))
    graph += _text_field(2, "gather_rows")
    graph += _bytes_field(11, _value_info(ROWS_INPUT, _INT64, ["n"]))
    for names, first in ((inputs, None), (outputs, "n")):
        graph += b"".join(
            _bytes_field(
                11 if first is None else 12,
                _value_info(name, kind, [first] + [None] * (rank - 1)),
            )
            for name, (kind, rank) in zip(names, entries)
        )
    opset = _text_field(1, "") + _int_field(2, OPSET)
    return _int_field(1, IR_VERSION) + _bytes_field(7, graph) + _bytes_field(8, opset)


def entry_signature(value: ort.OrtValue) -> tuple[int, int]:
    """The ONNX element type number and the rank of an ``OrtValue``.

    Raises:
        OnnxEngineError: a dtype no cache graph produces (strings, complex numbers, ...), or a
            scalar (which has no rows).
    """
    name, rank = value.data_type(), len(value.shape())
    if name not in ELEMENT_TYPES or rank < 1:
        raise OnnxEngineError(f"Cannot move rows of a {name} of rank {rank} on the device.")
    return ELEMENT_TYPES[name], rank


class DeviceRowGather:
    """Picks rows of cache entries where they live, through one bound Gather graph per dtype set.

    The graphs run on the provider and device of ``owner`` (the decoder session whose outputs are
    moved), with its session settings.
    """

    def __init__(self, owner: EngineSession) -> None:
        self._owner = owner
        self._calls: dict[tuple[tuple[int, int], ...], BoundGraphCall] = {}

    def __call__(
        self, entries: Mapping[str, ort.OrtValue], rows: np.ndarray
    ) -> dict[str, DeviceValue]:
        """``{name: entry[rows]}``, left on the device (``entries`` are bound outputs).

        Raises:
            OnnxEngineError: ONNX Runtime fails, or an entry has an unsupported dtype.
        """
        names = list(entries)
        signature = tuple(entry_signature(entries[name]) for name in names)
        inputs, outputs = entry_names(len(names))
        feeds: dict[str, DeviceValue] = {ROWS_INPUT: np.asarray(rows, dtype=np.int64)}
        feeds.update(zip(inputs, (entries[name] for name in names)))
        return dict(zip(names, self._call(signature).run(feeds, outputs)))

    def _call(self, signature: tuple[tuple[int, int], ...]) -> BoundGraphCall:
        if signature not in self._calls:
            owner = self._owner
            # The real provider, not the requested one: 'auto' may have fallen back to CPU.
            options = replace(owner.options, provider="cuda" if owner.on_cuda else "cpu")
            name = Path(f"gather_rows[{len(signature)} entries]")
            session = EngineSession(name, options, model=gather_rows_model(signature))
            self._calls[signature] = BoundGraphCall(session, host_outputs=())
        return self._calls[signature]


def take_rows_on_host(
    entries: Mapping[str, DeviceValue], rows: np.ndarray
) -> dict[str, DeviceValue]:
    """``{name: entry[rows]}`` with NumPy indexing: the plain path's cache is on the host."""
    return {name: host_array(value)[rows] for name, value in entries.items()}
