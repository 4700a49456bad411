"""Exception hierarchy of the engine.

Every error a user can cause derives from :class:`OnnxEngineError`, so callers can catch one type,
and each message names the bad value and what to do about it. ONNX Runtime's own exceptions never
escape: they are translated here at the boundary where we call it.
"""

from __future__ import annotations


class OnnxEngineError(Exception):
    """Base class of every error raised by onnx-engine."""


class ArtifactError(OnnxEngineError):
    """An artifact folder is missing, incomplete, corrupt or was made for another task."""


class ArtifactNotFoundError(ArtifactError):
    """The artifact folder, or a file it must contain, does not exist."""


class CorruptArtifactError(ArtifactError):
    """A file of the artifact exists but cannot be parsed (manifest, tokenizer, ONNX graph)."""


class HashMismatchError(ArtifactError):
    """A file's sha256 differs from the one recorded in the manifest: it was changed after
    export."""


class TaskMismatchError(ArtifactError):
    """The artifact was exported for another task than the class asked to load it."""


class ProviderError(OnnxEngineError):
    """An execution provider name is unknown, or the requested provider is not usable here."""


class InputError(OnnxEngineError, ValueError):
    """Input text or an argument has the wrong type or value."""


class MissingDependencyError(OnnxEngineError, ImportError):
    """An optional dependency needed for this operation is not installed."""


class ParityError(OnnxEngineError):
    """An exported or optimized model disagrees with its PyTorch reference beyond tolerance."""
