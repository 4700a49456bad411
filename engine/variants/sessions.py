"""Open the sessions of the variant that suits the provider really in use.

Which variant suits depends on the provider, and whether CUDA really works is only known once a
session exists (ONNX Runtime falls back to CPU silently). So the choice is made for the provider
asked for, and made again for CPU when ``auto`` fell back: a CUDA-only variant (fp16) never ends up
running on CPU. A bf16 variant is the fp32 files run by OpenVINO in bf16, so its sessions are
OpenVINO's; with ``provider='openvino'`` every session is, in f32 unless it is the bf16 variant
(``RuntimeOptions`` refuses ``openvino_precision='bf16'`` with any other variant).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from engine.artifact import Artifact
from engine.errors import ArtifactError, InputError
from engine.session import (
    CUDA,
    OPENVINO,
    EngineSession,
    RuntimeOptions,
    requested_providers,
)
from engine.variants.choice import (
    AUTO,
    BF16,
    FP32,
    RUNTIME_OPENVINO,
    VariantRecord,
    select_variant,
    variant_records,
)

logger = logging.getLogger(__name__)


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
    if providers == [OPENVINO]:
        from engine.openvino import OpenVinoSession

        specs = artifact.manifest.graphs
        return {
            role: OpenVinoSession(path_of(name), options, specs[role].output_names)
            for role, name in graphs.items()
        }
    return {
        role: EngineSession(path_of(name), options, providers) for role, name in graphs.items()
    }


def without_broken_variants(
    artifact: Artifact, requested: str
) -> tuple[Artifact, dict[str, str]]:
    """``artifact`` without the variants that have a missing or resized file, and why each was
    left out (variant -> the problem, naming the file and the fix); a warning says the same.

    A broken file of a variant that is not used must not stop a load (``auto`` picking fp32
    failed over a truncated int8 file); the variant asked for by name must be intact. Files are
    hashed only when used, so a same-size edit of an unused file is not seen here.

    Raises:
        ArtifactError: ``requested`` names one of the broken variants.
    """
    owners = artifact.manifest.variant_only_files()
    skipped: dict[str, str] = {}
    for file, problem in artifact.broken_files.items():
        skipped.setdefault(owners[file], problem)
    if requested in skipped:
        raise ArtifactError(f"The '{requested}' variant cannot be loaded: {skipped[requested]}")
    if not skipped:
        return artifact, skipped
    for name, problem in skipped.items():
        logger.warning("%s: variant '%s' is left out of this load: %s", artifact.path.name, name,
                       problem)
    kept = {name: record for name, record in artifact.manifest.variants.items()
            if name not in skipped}
    return replace(artifact, manifest=replace(artifact.manifest, variants=kept)), skipped


def options_for(record: VariantRecord, options: RuntimeOptions) -> RuntimeOptions:
    """``options`` for running ``record``: OpenVINO in bf16 for a bf16 variant, else unchanged.

    The options then name the bf16 variant too: ``RuntimeOptions`` allows bf16 only with it.
    """
    if record.runtime == RUNTIME_OPENVINO:
        return replace(options, provider="openvino", openvino_precision=BF16, variant=BF16)
    return options


def openvino_unusable_reason(artifact: Artifact, requested: str) -> str | None:
    """Why the OpenVINO variants that ``requested`` may choose cannot run here (None: they can)."""
    from engine.openvino import openvino_variants_unusable

    records = variant_records(artifact.manifest).values()
    return openvino_variants_unusable(
        record for record in records if requested in (AUTO, record.name)
    )


def open_variant(artifact: Artifact, requested: str, options: RuntimeOptions) -> VariantSessions:
    """Select the variant ``requested`` (``auto`` or a name) and open its sessions.

    Raises:
        InputError: unknown variant, or one that does not suit the provider in use.
        ArtifactError: the variant was not made, or failed its gate (the reason is in the message).
        ProviderError: CUDA was requested explicitly but is not usable.
    """
    providers = requested_providers(options.provider)
    if providers == [OPENVINO]:
        return _open_on_openvino(artifact, requested, options)
    expect_cuda = CUDA in providers
    openvino_unusable = None if expect_cuda else openvino_unusable_reason(artifact, requested)
    name, graphs = select_variant(
        artifact.manifest, requested, on_cuda=expect_cuda, openvino_unusable=openvino_unusable
    )
    record = variant_records(artifact.manifest)[name]
    if record.runtime == RUNTIME_OPENVINO:
        sessions = open_graphs(artifact, graphs, options_for(record, options))
        return VariantSessions(name, sessions)
    sessions = open_graphs(artifact, graphs, options, providers=providers)
    if expect_cuda and not all(session.on_cuda for session in sessions.values()):
        # provider='auto' fell back to CPU (an explicit 'cuda' raised above): choose for CPU.
        name, cpu_graphs = select_variant(artifact.manifest, requested, on_cuda=False)
        if cpu_graphs != graphs:
            sessions = open_graphs(artifact, cpu_graphs, replace(options, provider="cpu"))
    return VariantSessions(name, sessions)


def _open_on_openvino(
    artifact: Artifact, requested: str, options: RuntimeOptions
) -> VariantSessions:
    """``provider='openvino'``: the exported graphs in f32 (for ``auto`` and ``fp32``: options
    cannot ask for bf16 with them), or the gated bf16 variant. The other variants hold ONNX
    Runtime's own operators (fused attention, int8 ops).

    Raises:
        InputError: a variant that only ONNX Runtime runs.
        ArtifactError: bf16 asked for but not made, or failed its gate.
    """
    if requested in (AUTO, FP32):
        graphs = variant_records(artifact.manifest)[FP32].graphs
        return VariantSessions(FP32, open_graphs(artifact, graphs, options, providers=[OPENVINO]))
    if requested != BF16:
        raise InputError(
            f"The '{requested}' variant runs on ONNX Runtime, not OpenVINO. Load it with "
            "provider='cpu', or use variant='auto', 'fp32' or 'bf16' with provider='openvino'."
        )
    name, graphs = select_variant(artifact.manifest, BF16, on_cuda=False, openvino_unusable=None)
    record = variant_records(artifact.manifest)[name]
    return VariantSessions(name, open_graphs(artifact, graphs, options_for(record, options)))
