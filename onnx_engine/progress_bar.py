"""A dependency-free progress bar on stderr, drawn only when stderr is a terminal or forced."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


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
