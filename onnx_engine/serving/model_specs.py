"""Which artifacts a server serves, under which names: ``NAME=ARTIFACT`` as the CLI and Ray's
``serve run`` spell them, or a mapping (a Serve config file's ``models:``); and how each is
loaded for serving."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.options import RuntimeOptions

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def model_specs(values: list[str] | Mapping[str, Any]) -> dict[str, Path]:
    """``NAME=ARTIFACT`` items (a bare ``ARTIFACT`` is named after its folder), or a mapping
    name -> path, as name -> path.

    Raises:
        InputError: a name not usable in a URL, or a repeated one.
    """
    if isinstance(values, Mapping):
        pairs = [(str(name), str(path)) for name, path in values.items()]
    else:
        pairs = []
        for value in values:
            name, sep, path = value.partition("=")
            pairs.append((name, path) if sep else (Path(value).resolve().name, value))
    specs: dict[str, Path] = {}
    for name, path in pairs:
        if not _NAME.match(name):
            raise InputError(
                f"Model name {name!r} is not usable in a URL; use letters, digits, '.', '_', '-'."
            )
        if name in specs:
            raise InputError(f"Two models are named {name!r}; name them with NAME=ARTIFACT.")
        specs[name] = Path(path)
    return specs


def load_served_model(path: Path, options: RuntimeOptions) -> Any:
    """The engine model a server runs from the artifact at ``path``, with every variant a call
    may run already open (T5's variant for batched calls), so that no request pays a session
    load.

    Raises:
        OnnxEngineError: as ``engine.load``.
    """
    import engine

    model = engine.load(path, options=options)
    model.open_batch_variant()
    return model
