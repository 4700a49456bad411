"""Length-sorted batching: texts of similar length share a batch, so little is spent on padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from engine.tokenization import TextInput


def length_sorted_chunks(items: Sequence[TextInput], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``items`` in batches of at most ``batch_size``, shortest texts first.

    A batch is padded to its longest text, so mixing a 5-token text with a 500-token one costs the
    short one 100x its compute; sorting by character length (a cheap proxy for token length)
    groups like with like. Callers write each batch's results back at these indices, so the
    output keeps the input order.
    """
    return sorted_chunks([_char_length(item) for item in items], batch_size)


def sorted_chunks(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``lengths`` in batches of at most ``batch_size``, shortest first."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _char_length(item: TextInput) -> int:
    return len(item) if isinstance(item, str) else len(item[0]) + len(item[1])
