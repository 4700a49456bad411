"""The decoder's key/value cache between ONNX Runtime calls.

Optimum's T5 graphs name the cache ``past_key_values.{layer}.{decoder|encoder}.{key|value}`` on the
way in and ``present.…`` on the way out. Self-attention entries (``decoder``) grow by one position
per step; cross-attention entries (``encoder``) are computed once from the encoder output by the
first decoder step and never change, so ``decoder_with_past`` does not even return them.

Entries are NumPy arrays, or ``OrtValue``s that a bound step left on the device
(:mod:`engine.io_binding`); a step feeds them back as they are. Moving rows (beam search) is done
by the cache's ``take_rows``: NumPy indexing on the plain path, a Gather graph on the device on
the bound path (:mod:`engine.row_gather`), so a bound cache never leaves the device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from engine.io_binding import DeviceValue
from engine.row_gather import take_rows_on_host

# ``take_rows(entries, rows)`` -> ``{name: entry[rows]}``, wherever the entries live.
RowTake = Callable[[Mapping[str, DeviceValue], np.ndarray], dict[str, DeviceValue]]

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."


def is_present(name: str) -> bool:
    return name.startswith(PRESENT_PREFIX)


def _past_name(present_name: str) -> str:
    return PAST_PREFIX + present_name[len(PRESENT_PREFIX) :]


@dataclass(frozen=True)
class DecoderCache:
    """Past keys and values of every decoder layer, keyed by the ``past_key_values.*`` input name.

    Each array is ``[rows, heads, length, head_dim]``. The values ONNX Runtime returns are fed back
    as they are, and ``take_rows`` moves rows where the values live.
    """

    self_attention: Mapping[str, DeviceValue]
    cross_attention: Mapping[str, DeviceValue]
    take_rows: RowTake = field(default=take_rows_on_host, compare=False)

    @classmethod
    def from_first_step(
        cls,
        names: Sequence[str],
        arrays: Sequence[DeviceValue],
        take_rows: RowTake = take_rows_on_host,
    ) -> DecoderCache:
        """The cache after ``decoder_model``, which returns self- and cross-attention presents."""
        self_attention: dict[str, DeviceValue] = {}
        cross_attention: dict[str, DeviceValue] = {}
        for name, array in zip(names, arrays):
            if is_present(name):
                target = cross_attention if ".encoder." in name else self_attention
                target[_past_name(name)] = array
        return cls(self_attention, cross_attention, take_rows)

    def advanced(self, names: Sequence[str], arrays: Sequence[DeviceValue]) -> DecoderCache:
        """The cache after a ``decoder_with_past`` step: new self-attention, same cross."""
        self_attention = {_past_name(n): a for n, a in zip(names, arrays) if is_present(n)}
        return DecoderCache(self_attention, self.cross_attention, self.take_rows)

    def feeds(self) -> dict[str, DeviceValue]:
        return {**self.self_attention, **self.cross_attention}

    def reordered(self, rows: np.ndarray) -> DecoderCache:
        """Self-attention rows picked by index, as beam search moves hypotheses between beams.

        Cross-attention is left alone: beam search only moves rows within one input's group of
        beams, and all rows of a group hold copies of the same encoder output.
        """
        self_attention = self.take_rows(self.self_attention, rows)
        return DecoderCache(self_attention, self.cross_attention, self.take_rows)

    def expanded(self, repeats: int) -> DecoderCache:
        """Each row repeated ``repeats`` times in place (row ``i`` -> rows ``i*r … i*r+r-1``).

        Done once per batch, after the first step: both halves in one ``take_rows`` call.
        """
        entries = self.feeds()
        some = next(iter(entries.values()))
        rows = np.repeat(np.arange(_row_count(some), dtype=np.int64), repeats)
        moved = self.take_rows(entries, rows)
        return DecoderCache(
            {name: moved[name] for name in self.self_attention},
            {name: moved[name] for name in self.cross_attention},
            self.take_rows,
        )


def _row_count(value: DeviceValue) -> int:
    return int(value.shape()[0] if isinstance(value, ort.OrtValue) else value.shape[0])
