"""Keep third-party libraries' chatter off the user's terminal for a block of code."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_library_output() -> Iterator[None]:
    """Silence warnings, log records below ERROR and prints to stdout inside the block.

    Exporters, optimizers and quantizers report expected events (tracing constants, shared
    initializers, "consider pre-processing") through loggers they create lazily, so per-logger
    levels cannot catch them; our own parity checks judge the result instead. Errors still pass.
    """
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
