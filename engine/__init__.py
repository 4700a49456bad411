"""onnx-engine runtime: ONNX Runtime, tokenizers and NumPy only (never torch or transformers)."""

from engine.classifier import Classifier
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
from engine.loading import load
from engine.seq2seq import Seq2SeqLM
from engine.session import RuntimeOptions
from engine.version import __version__

__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "Classifier",
    "CorruptArtifactError",
    "HashMismatchError",
    "InputError",
    "MissingDependencyError",
    "OnnxEngineError",
    "ParityError",
    "ProviderError",
    "RuntimeOptions",
    "Seq2SeqLM",
    "TaskMismatchError",
    "__version__",
    "load",
]
