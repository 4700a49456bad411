"""A PyTorch reference that runs each input once per ``optimize``, however many variants are
checked on it."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any


class MemoizedReference:
    """A PyTorch reference with the outputs of its ``kept`` methods kept per input.

    Every variant is checked on the same inputs, so PyTorch runs them once per ``optimize``, not
    once per variant or per trial of the int8 search (on a tiny T5 it is most of a check's
    time). Calls are keyed by their pickled arguments; the arrays returned are shared, so
    callers must not modify them.
    """

    def __init__(self, reference: Any, kept: tuple[str, ...]) -> None:
        self.reference = reference
        self.max_length = reference.max_length
        self._kept = kept
        self._outputs: dict[bytes, Any] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in self._kept:
            raise AttributeError(name)
        method = getattr(self.reference, name)

        def kept(*args: Any, **kwargs: Any) -> Any:
            key = pickle.dumps((name, args, sorted(kwargs.items())))
            if key not in self._outputs:
                self._outputs[key] = method(*args, **kwargs)
            return self._outputs[key]

        return kept
