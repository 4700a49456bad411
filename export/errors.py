"""Errors of the export side, under the same base class as the engine's."""

from __future__ import annotations

from engine.errors import OnnxEngineError


class ExportError(OnnxEngineError):
    """An export could not be made (unsupported model, exporter failure)."""


class OutputExistsError(ExportError):
    """The output folder exists and ``force`` was not given: exports never clobber silently."""
