"""``engine.load``: open any artifact with the class that serves its task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.classifier import Classifier
from engine.manifest import TASK_CLASSIFICATION, TASK_TEXT2TEXT, ArtifactManifest
from engine.seq2seq import Seq2SeqLM
from engine.errors import TaskMismatchError

_TASK_CLASSES: dict[str, Any] = {TASK_CLASSIFICATION: Classifier, TASK_TEXT2TEXT: Seq2SeqLM}


def load(path: str | Path, **kwargs: Any) -> Any:
    """Load an artifact with the engine class for the task its manifest names.

    Keyword arguments are passed to that class's ``load`` (``provider``, ``threads``, ``options``,
    ``variant``).

    Raises:
        ArtifactError: missing or corrupt artifact, or a task this engine cannot serve.
    """
    manifest = ArtifactManifest.read(Path(path))
    engine_class = _TASK_CLASSES.get(manifest.task)
    if engine_class is None:
        raise TaskMismatchError(
            f"'{path}' is a '{manifest.task}' artifact; this engine serves: "
            f"{', '.join(sorted(_TASK_CLASSES))}."
        )
    return engine_class.load(path, **kwargs)
