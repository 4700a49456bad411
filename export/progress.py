"""Stage progress on stderr: a line per export stage with its duration, silent when quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class StageProgress:
    """Prints ``[2/5] exporting ONNX ... done (1.3 s)`` lines; ``quiet`` silences everything."""

    total: int
    quiet: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stderr)  # looked up when created
    _index: int = 0

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        self._index += 1
        started = time.perf_counter()
        self._write(f"[{self._index}/{self.total}] {title} ...")
        try:
            yield
        except BaseException:
            self._write(" failed\n")
            raise
        self._write(f" done ({time.perf_counter() - started:.1f} s)\n")

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()
