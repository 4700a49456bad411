"""``engine.load``: open any artifact with the class that serves its task."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.artifact import Artifact
from engine.classifier import Classifier
from engine.embedder import Embedder
from engine.errors import TaskMismatchError
from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT
from engine.seq2seq import Seq2SeqLM
from engine.tasks.reranking import Reranker
from engine.session import RuntimeOptions

_TASK_CLASSES: dict[str, Any] = {
    TASK_CLASSIFICATION: Classifier,
    TASK_TEXT2TEXT: Seq2SeqLM,
    TASK_FEATURE_EXTRACTION: Embedder,
    Reranker.task: Reranker,
}


def engine_class_for(task: str) -> Any:
    """The engine class that serves ``task``.

    Raises:
        TaskMismatchError: this engine serves no such task.
    """
    engine_class = _TASK_CLASSES.get(task)
    if engine_class is None:
        raise TaskMismatchError(
            f"'{task}' artifacts cannot be served; this engine serves: "
            f"{', '.join(sorted(_TASK_CLASSES))}."
        )
    return engine_class


def load(
    path: str | Path,
    provider: str | None = None,
    threads: int | None = None,
    options: RuntimeOptions | None = None,
    variant: str | None = None,
) -> Any:
    """Load an artifact with the engine class for the task its manifest names.

    The arguments mean what they mean for that class's ``load``; the manifest is read once.

    Raises:
        ArtifactError: missing, corrupt or unchecked artifact, or a task this engine cannot serve.
        InputError: an invalid option.
        ProviderError: the provider asked for is not usable.
    """
    artifact = Artifact.open(path)
    engine_class = _TASK_CLASSES.get(artifact.manifest.task)
    if engine_class is None:
        raise TaskMismatchError(
            f"'{path}' is a '{artifact.manifest.task}' artifact; this engine serves: "
            f"{', '.join(sorted(_TASK_CLASSES))}."
        )
    options = engine_class.resolve_options(
        options, provider=provider, threads=threads, variant=variant
    )
    return engine_class.from_artifact(replace(artifact, verify_hashes=options.verify_hashes), options)
