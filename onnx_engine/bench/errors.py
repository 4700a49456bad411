"""Errors of the benchmark, under the engine's base class so the CLI reports them in one line."""

from __future__ import annotations

from engine.errors import OnnxEngineError


class BenchError(OnnxEngineError):
    """A benchmark cannot run as asked (bad option value, unusable model or artifact)."""


class ContenderUnavailable(BenchError):
    """A contender cannot run here (library not installed, no PyTorch checkpoint, no variant).

    The runner turns it into a note in the report and goes on with the other contenders.
    """
