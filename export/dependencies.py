"""Lazy imports of the heavy export-side libraries, with the install command in the error."""

from __future__ import annotations

import importlib
from types import ModuleType

from engine.errors import MissingDependencyError

EXPORT_INSTALL_HINT = (
    "pip install -c constraints.txt 'onnx-engine[cpu,export]' "
    "(constraints.txt pins torch==2.13.0, the CPU build)"
)


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an error that says how to install the export extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"'{module}' is needed to export and verify models but is not installed: "
            f"{EXPORT_INSTALL_HINT}."
        ) from error
