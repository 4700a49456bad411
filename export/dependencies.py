"""Lazy imports of the heavy export-side libraries, with the install command in the error."""

from __future__ import annotations

import importlib
import importlib.util
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
        raise _missing(module) from error


def check_installed(*modules: str) -> None:
    """Raise ``require``'s error for the first of ``modules`` that is not installed, without
    importing any (torch takes seconds), so a missing extra is said before any other work."""
    for module in modules:
        top = module.split(".", 1)[0]
        if importlib.util.find_spec(top) is None:
            raise _missing(module)


def _missing(module: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"'{module}' is needed to export and verify models but is not installed: "
        f"{EXPORT_INSTALL_HINT}."
    )
