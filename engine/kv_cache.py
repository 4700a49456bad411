"""The decoder's key/value cache between ONNX Runtime calls.

Optimum's T5 graphs name the cache ``past_key_values.{layer}.{decoder|encoder}.{key|value}`` on the
way in and ``present.…`` on the way out. Self-attention entries (``decoder``) grow by one position
per step; cross-attention entries (``encoder``) are computed once from the encoder output by the
first decoder step and never change, so ``decoder_with_past`` does not even return them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."


def is_present(name: str) -> bool:
    return name.startswith(PRESENT_PREFIX)


def _past_name(present_name: str) -> str:
    return PAST_PREFIX + present_name[len(PRESENT_PREFIX) :]


@dataclass(frozen=True)
class DecoderCache:
    """Past keys and values of every decoder layer, keyed by the ``past_key_values.*`` input name.

    Each array is ``[rows, heads, length, head_dim]``. The arrays ONNX Runtime returns are fed back
    as they are: a step never copies the cache unless beams reorder it.
    """

    self_attention: Mapping[str, np.ndarray]
    cross_attention: Mapping[str, np.ndarray]

    @classmethod
    def from_first_step(cls, names: Sequence[str], arrays: Sequence[np.ndarray]) -> DecoderCache:
        """The cache after ``decoder_model``, which returns self- and cross-attention presents."""
        self_attention, cross_attention = {}, {}
        for name, array in zip(names, arrays):
            if is_present(name):
                target = cross_attention if ".encoder." in name else self_attention
                target[_past_name(name)] = array
        return cls(self_attention, cross_attention)

    def advanced(self, names: Sequence[str], arrays: Sequence[np.ndarray]) -> DecoderCache:
        """The cache after a ``decoder_with_past`` step: new self-attention, same cross."""
        self_attention = {_past_name(n): a for n, a in zip(names, arrays) if is_present(n)}
        return DecoderCache(self_attention, self.cross_attention)

    def feeds(self) -> dict[str, np.ndarray]:
        return {**self.self_attention, **self.cross_attention}

    @property
    def rows(self) -> int:
        return next(iter(self.self_attention.values())).shape[0]

    @property
    def length(self) -> int:
        """Decoder positions already in the cache."""
        return next(iter(self.self_attention.values())).shape[2]

    def reordered(self, rows: np.ndarray) -> DecoderCache:
        """Self-attention rows picked by index, as beam search moves hypotheses between beams.

        Cross-attention is left alone: beam search only moves rows within one input's group of
        beams, and all rows of a group hold copies of the same encoder output.
        """
        return DecoderCache(
            {name: array[rows] for name, array in self.self_attention.items()},
            self.cross_attention,
        )

    def expanded(self, repeats: int) -> DecoderCache:
        """Each row repeated ``repeats`` times in place (row ``i`` -> rows ``i*r … i*r+r-1``)."""
        def repeat(entries: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {name: np.repeat(array, repeats, axis=0) for name, array in entries.items()}

        return DecoderCache(repeat(self.self_attention), repeat(self.cross_attention))
