"""Open the sessions of the variant that suits the provider really in use.

Which variant suits depends on the provider, and whether CUDA really works is only known once a
session exists (ONNX Runtime falls back to CPU silently). So the choice is made for the provider
asked for, and made again for CPU when ``auto`` fell back: a CUDA-only variant (fp16) never ends up
running on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from engine.artifact import Artifact
from engine.session import CUDA, EngineSession, RuntimeOptions, requested_providers
from engine.variants import select_variant


@dataclass(frozen=True)
class VariantSessions:
    """The chosen variant's name and one session per role (``model``, ``encoder``, ...)."""

    name: str
    sessions: Mapping[str, EngineSession]


def open_graphs(
    artifact: Artifact,
    graphs: Mapping[str, str],
    options: RuntimeOptions,
    listed: bool = True,
    providers: list[str] | None = None,
) -> dict[str, EngineSession]:
    """One session per role for the given files of ``artifact``, without any variant choice.

    ``listed`` files must be in the manifest and are hash-checked; the optimizer opens files it
    has just built (not listed yet) with ``listed=False``. ``providers`` (resolved from
    ``options.provider`` when not given) is shared by all sessions.

    Raises:
        ArtifactError: a listed file is not in the manifest or differs from it.
        CorruptArtifactError: ONNX Runtime cannot load a file.
        ProviderError: CUDA was requested explicitly but is not usable.
    """
    path_of = artifact.verified_file if listed else artifact.path_of
    providers = providers or requested_providers(options.resolved().provider)
    return {
        role: EngineSession(path_of(name), options, providers) for role, name in graphs.items()
    }


def open_variant(artifact: Artifact, requested: str, options: RuntimeOptions) -> VariantSessions:
    """Select the variant ``requested`` (``auto`` or a name) and open its sessions.

    Raises:
        InputError: unknown variant, or one that does not suit the provider in use.
        ArtifactError: the variant was not made, or failed its gate (the reason is in the message).
        ProviderError: CUDA was requested explicitly but is not usable.
    """
    providers = requested_providers(options.provider)
    expect_cuda = CUDA in providers
    name, graphs = select_variant(artifact.manifest, requested, on_cuda=expect_cuda)
    sessions = open_graphs(artifact, graphs, options, providers=providers)
    if expect_cuda and not all(session.on_cuda for session in sessions.values()):
        # provider='auto' fell back to CPU (an explicit 'cuda' raised above): choose for CPU.
        name, cpu_graphs = select_variant(artifact.manifest, requested, on_cuda=False)
        if cpu_graphs != graphs:
            sessions = open_graphs(artifact, cpu_graphs, replace(options, provider="cpu"))
    return VariantSessions(name, sessions)
