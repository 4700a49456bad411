"""Graph calls that keep their outputs on the device, through ONNX Runtime IO binding.

A plain ``session.run`` copies every input to the device and every output back into a NumPy array.
In a decode loop on CUDA that is the whole KV cache, twice per generated token. Bound, a step's
outputs stay ``OrtValue``s where ONNX Runtime put them and the next step binds them as inputs as
they are; only the outputs the host needs (the logits, to choose the next token) are copied back.

ONNX Runtime binds CPU tensors too, so the bound path runs (and is tested) on the CPU provider,
where it must give exactly the plain path's results; it only pays off on a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np
import onnxruntime as ort

from engine.session import EngineSession

DeviceValue: TypeAlias = np.ndarray | ort.OrtValue


def wants_binding(setting: str, session: EngineSession) -> bool:
    """Whether ``RuntimeOptions.io_binding`` (checked there) asks for the bound path for
    ``session``: ``on``, or ``auto`` on CUDA."""
    return setting == "on" or (setting == "auto" and session.on_cuda)


def host_array(value: DeviceValue) -> np.ndarray:
    """A value as a host NumPy array (a copy when it lives in an ``OrtValue``)."""
    return value.numpy() if isinstance(value, ort.OrtValue) else value


class GraphCall:
    """Runs one session the plain way: NumPy in, NumPy out."""

    bound = False

    def __init__(self, session: EngineSession) -> None:
        self.session = session

    def run(self, feeds: Mapping[str, DeviceValue], output_names: Sequence[str]) -> list:
        """The named outputs; ``feeds`` holds NumPy arrays only on this path.

        Raises:
            OnnxEngineError: an input is missing or ONNX Runtime fails.
        """
        return self.session.run(feeds, list(output_names))


class BoundGraphCall(GraphCall):
    """Runs one session through IO binding; outputs other than ``host_outputs`` stay on device.

    Feeds may mix NumPy arrays (copied to the device by ONNX Runtime) and ``OrtValue``s returned
    by an earlier bound call (bound where they are, without a copy).
    """

    bound = True

    def __init__(self, session: EngineSession, host_outputs: Sequence[str] = ("logits",)) -> None:
        super().__init__(session)
        self.device, self.device_id = session.device
        self.host_outputs = frozenset(host_outputs)

    def run(self, feeds: Mapping[str, DeviceValue], output_names: Sequence[str]) -> list:
        """The named outputs: NumPy for ``host_outputs``, ``OrtValue`` on the device otherwise.

        Raises:
            OnnxEngineError: an input is missing or ONNX Runtime fails.
        """
        inputs = self.session.select_inputs(feeds)
        raw = self.session.raw
        binding = raw.io_binding()
        try:
            for name, value in inputs.items():
                if isinstance(value, ort.OrtValue):
                    binding.bind_ortvalue_input(name, value)
                else:
                    binding.bind_cpu_input(name, np.ascontiguousarray(value))
            for name in output_names:  # host outputs are copied to the host by ONNX Runtime
                if name in self.host_outputs:
                    binding.bind_output(name, "cpu")
                else:
                    binding.bind_output(name, self.device, self.device_id)
            raw.run_with_iobinding(binding)
            values = binding.get_outputs()
        except Exception as error:  # ORT raises its own untyped pybind errors
            raise self.session.failure(error) from error
        return [
            value.numpy() if name in self.host_outputs else value
            for name, value in zip(output_names, values)
        ]


def graph_call(session: EngineSession, setting: str) -> GraphCall:
    """The bound or the plain call for ``session``, as ``RuntimeOptions.io_binding`` asks."""
    return BoundGraphCall(session) if wants_binding(setting, session) else GraphCall(session)
