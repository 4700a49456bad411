"""onnx-engine runtime: ONNX Runtime, tokenizers and NumPy only (never torch or transformers).

The public names are loaded on first use (PEP 562), so ``import engine.errors`` or
``engine.__version__`` stays light: ONNX Runtime is imported only when a model class or
``engine.load`` is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    CorruptArtifactError,
    HashMismatchError,
    InputError,
    MissingDependencyError,
    OnnxEngineError,
    ParityError,
    ProviderError,
    TaskMismatchError,
)
from engine.version import __version__

# Public name -> module that defines it, imported when the name is first read.
_LAZY = {
    "Classifier": "engine.tasks.classification",
    "Embedder": "engine.tasks.feature_extraction",
    "Reranker": "engine.tasks.reranking",
    "Seq2SeqLM": "engine.tasks.text2text",
    "TokenClassifier": "engine.tasks.token_classification",
    "RuntimeOptions": "engine.options",
    "load": "engine.loading",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ does the work
    from engine.loading import load
    from engine.options import RuntimeOptions
    from engine.tasks.classification import Classifier
    from engine.tasks.feature_extraction import Embedder
    from engine.tasks.reranking import Reranker
    from engine.tasks.text2text import Seq2SeqLM
    from engine.tasks.token_classification import TokenClassifier


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "Classifier",
    "CorruptArtifactError",
    "Embedder",
    "HashMismatchError",
    "InputError",
    "MissingDependencyError",
    "OnnxEngineError",
    "ParityError",
    "ProviderError",
    "Reranker",
    "RuntimeOptions",
    "Seq2SeqLM",
    "TaskMismatchError",
    "TokenClassifier",
    "__version__",
    "load",
]
