"""``engine.load``: open any artifact with the class that serves its task."""

from __future__ import annotations

from pathlib import Path

from engine.artifact import Artifact
from engine.options import RuntimeOptions
from engine.tasks import engine_class_for
from engine.tasks.base import ArtifactModel


def load(
    path: str | Path,
    provider: str | None = None,
    threads: int | None = None,
    options: RuntimeOptions | None = None,
    variant: str | None = None,
) -> ArtifactModel:
    """Load an artifact with the engine class for the task its manifest names.

    The arguments mean what they mean for :meth:`ArtifactModel.load` (which is this for one
    task); the manifest is read once, the options resolved once, by ``from_artifact``.

    Raises:
        ArtifactError: missing, corrupt or unchecked artifact, or a task this engine cannot serve.
        InputError: an invalid option.
        ProviderError: the provider asked for is not usable.
    """
    artifact = Artifact.open(path)
    engine_class = engine_class_for(artifact.manifest.task)
    return engine_class.from_artifact(artifact, options, provider=provider, threads=threads,
                                      variant=variant)
