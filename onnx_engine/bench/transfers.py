"""Count the host<->device copies a piece of engine code makes, by tensor name, at ONNX Runtime's
API.

The engine's claim that the KV cache never leaves the device under IO binding is checked here from
the outside: while a ``TransferCounter`` is active, every call through which ONNX Runtime's Python
API moves a tensor between host and device memory is recorded with the tensor's name and size:

- up (host -> device): ``IOBinding.bind_cpu_input``, ``OrtValue.ortvalue_from_numpy`` and every
  input of a plain ``InferenceSession.run``;
- down (device -> host): ``OrtValue.numpy()`` on a bound output (named by the output it was bound
  as) and every output of a plain ``InferenceSession.run``.

On a CUDA session these are exactly the copies (a host output bound to ``cpu`` is copied by the run
and then read with ``numpy()``, counted once). On the CPU provider nothing really moves, but the
same calls are made, so the count is the one the code would make on a GPU: that is what lets the
test suite check it without one. Values bound in place (``bind_ortvalue_input``) are not copies.
For tests and ``benchmarks/gpu_check.sh``; never active in the engine itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

UP, DOWN = "up", "down"
_TAG = "_transfer_name"
CACHE_PREFIXES = ("past_key_values.", "present.")


@dataclass
class TransferCounter:
    """Copies seen while active, as ``(direction, name, bytes)`` in order; use it as a context."""

    events: list[tuple[str, str, int]] = field(default_factory=list)
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def count(self, direction: str) -> Counter:
        """Copies per tensor name in one direction (``up`` or ``down``)."""
        return Counter(name for way, name, _ in self.events if way == direction)

    def cache_copies(self) -> int:
        """Copies, either way, of KV-cache tensors (``past_key_values.*`` / ``present.*``)."""
        return sum(1 for _, name, _ in self.events if name.startswith(CACHE_PREFIXES))

    def bytes(self, direction: str) -> int:
        return sum(size for way, _, size in self.events if way == direction)

    def clear(self) -> None:
        self.events.clear()

    def __enter__(self) -> TransferCounter:
        self._patch(ort.IOBinding, "bind_cpu_input", self._bind_cpu_input)
        self._patch(ort.IOBinding, "bind_output", self._bind_output)
        self._patch(ort.IOBinding, "get_outputs", self._get_outputs)
        self._patch(ort.OrtValue, "numpy", self._numpy)
        self._patch(ort.OrtValue, "ortvalue_from_numpy", self._from_numpy, static=True)
        self._patch(ort.InferenceSession, "run", self._run)
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()

    def _patch(self, owner: type, name: str, wrapper: Callable, static: bool = False) -> None:
        own = owner.__dict__.get(name)  # None: inherited (InferenceSession.run is Session's)
        function = own.__func__ if static else getattr(owner, name)

        def patched(*args: Any, **kwargs: Any) -> Any:
            return wrapper(function, *args, **kwargs)

        setattr(owner, name, staticmethod(patched) if static else patched)
        self._undo.append(
            (lambda: setattr(owner, name, own)) if own is not None
            else (lambda: delattr(owner, name))
        )

    def _record(self, direction: str, name: str, value: Any) -> None:
        self.events.append((direction, name, int(getattr(value, "nbytes", 0))))

    def _bind_cpu_input(self, original, binding, name, array):
        self._record(UP, name, array)
        return original(binding, name, array)

    def _bind_output(self, original, binding, name, *args, **kwargs):
        binding.__dict__.setdefault("_counted_outputs", []).append(name)
        return original(binding, name, *args, **kwargs)

    def _get_outputs(self, original, binding):
        values = original(binding)
        for name, value in zip(binding.__dict__.get("_counted_outputs", []), values):
            setattr(value, _TAG, name)
        return values

    def _numpy(self, original, value):
        array = original(value)
        self._record(DOWN, getattr(value, _TAG, "<unnamed>"), array)
        return array

    def _from_numpy(self, original, array, *args, **kwargs):
        self._record(UP, "<ortvalue_from_numpy>", array)
        return original(array, *args, **kwargs)

    def _run(self, original, session, output_names, input_feed, *args, **kwargs):
        for name, value in input_feed.items():
            if isinstance(value, np.ndarray):
                self._record(UP, name, value)
        outputs = original(session, output_names, input_feed, *args, **kwargs)
        names = output_names or [node.name for node in session.get_outputs()]
        for name, value in zip(names, outputs):
            self._record(DOWN, name, value)
        return outputs
