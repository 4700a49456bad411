"""Lazy imports of the ``serve`` extra for the commands that need it, with the install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from engine.errors import MissingDependencyError

SERVE_INSTALL_HINT = "pip install 'onnx-engine[cpu,serve]'"


def require_modules(command: str, package: str, names: tuple[str, ...]) -> dict[str, ModuleType]:
    """``package.<name>`` for each name, or an error naming the missing module and the fix."""
    try:
        return {name: importlib.import_module(f"{package}.{name}") for name in names}
    except ImportError as error:
        raise MissingDependencyError(
            f"'onnx-engine {command}' needs the serve extra ({error.name} is missing): "
            f"{SERVE_INSTALL_HINT}."
        ) from error
