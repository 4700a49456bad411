"""A dependency-free progress bar on stderr, drawn only when stderr is a terminal or forced."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

Item = TypeVar("Item")

# Texts per engine call in the CLI: large enough to batch well, small enough for the bar to move.
CHUNK = 256


@dataclass
class ProgressBar:
    """``update(n)`` advances the bar; ``close()`` ends its line. Silent when ``enabled`` is off."""

    total: int
    label: str = ""
    enabled: bool = True
    stream: TextIO = field(default_factory=lambda: sys.stderr)  # looked up when created
    width: int = 30
    done: int = 0
    _started: float = field(default_factory=time.perf_counter)

    def update(self, count: int) -> None:
        self.done = min(self.total, self.done + count)
        if not self.enabled:
            return
        filled = int(self.width * self.done / max(1, self.total))
        elapsed = time.perf_counter() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{self.done}/{self.total} ({rate:.0f}/s)"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def chunks_with_progress(
    items: Sequence[Item], label: str, quiet: bool = False
) -> Iterator[Sequence[Item]]:
    """``items`` in slices of ``CHUNK``; the bar (drawn only when there is more than one slice
    and not ``quiet``) advances once the caller has handled a slice, and ends after the last."""
    bar = ProgressBar(total=len(items), label=label, enabled=len(items) > CHUNK and not quiet)
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        yield chunk
        bar.update(len(chunk))
    bar.close()
