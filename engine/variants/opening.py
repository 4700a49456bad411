"""Which variant a load opens, and its sessions: the variant choice of every engine class.

A load is a pipeline; each stage takes what the one before returned, and the files are entered
in this order:

1. :func:`engine.variants.choice.offer_for`: the variant records, and which of them can run
   here (OpenVINO's usability asked once): an :class:`~engine.variants.choice.Offer`;
2. :mod:`engine.variants.regate`: the lossy variants gated on another kind of machine re-gated
   here (the verdicts cache read once, the checks still needed run, the fresh verdicts recorded);
3. :mod:`engine.variants.retime`: where the timings come from another CPU, the candidates timed
   here, and the fastest kept open;
4. and 5. :func:`engine.variants.sessions.open_variant`: otherwise the choice for the provider in
   use (:func:`engine.variants.choice.choose_for_load`) and its sessions, CUDA's fallback to the
   CPU included.

Stages 2 and 3 run on ONNX Runtime's CPU provider only. What comes back is sessions: the engine
class assembles itself from them (``build`` only makes the candidates that re-gating and
re-timing run).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from engine.artifact import Artifact
from engine.cpu import current_cpu
from engine.errors import ArtifactError
from engine.options import RuntimeOptions, required
from engine.session import CPU, EngineSession, requested_providers
from engine.variants.choice import fastest_on_workload, offer_for
from engine.variants.records import VariantRecord
from engine.variants.regate import regated_for_this_machine
from engine.variants.retime import retimed_auto
from engine.variants.sessions import ModelFactory, open_variant

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class OpenedVariant:
    """The sessions a load runs on, and what the choice left out.

    ``skipped`` maps each variant left out for a missing or resized file to the problem;
    ``reason`` says which lossy variants failed their gate on this machine ("" when none).
    ``for_batches`` is the variant ``auto`` runs for batched calls where another is faster there
    than ``name`` (see :func:`open_for_load`); its sessions are the model's to open.
    """

    name: str
    sessions: Mapping[str, EngineSession]
    skipped: Mapping[str, str]
    reason: str
    for_batches: VariantRecord | None = None


def open_for_load(
    artifact: Artifact, options: RuntimeOptions, build: ModelFactory,
    batch_workload: str | None = None,
) -> OpenedVariant:
    """Choose the variant ``options`` asks for on this machine and open its sessions.

    ``options`` are resolved (every field set). On ONNX Runtime's CPU provider only, lossy
    variants are re-gated and variants re-timed here first: on CUDA the CPU kernels' accuracy
    and timings say nothing. Where the task names a ``batch_workload`` and ``auto`` on the CPU
    has a passing variant timed faster on it here than its pick, that variant is
    ``for_batches`` (int4 is T5's fastest at batch 1, int8 at batch 8 on AMX).

    Raises:
        ArtifactError: the variant asked for was not made, failed its gate, or has a missing,
            resized or modified file.
        InputError: a variant made for another provider.
        ProviderError: CUDA requested but not usable.
    """
    variant = required(options.variant, "variant")
    artifact, skipped = without_broken_variants(artifact, variant)
    on_cpu = requested_providers(required(options.provider, "provider")) == [CPU]
    offer = offer_for(artifact.manifest, variant, on_cpu)
    reason = ""
    chosen = None
    if on_cpu:
        offer, reason = regated_for_this_machine(build, artifact, offer, options)
        chosen = retimed_auto(build, artifact, offer, options)
    if chosen is None:
        chosen = open_variant(artifact, variant, options, offer)
    for_batches = None
    if on_cpu and batch_workload is not None:
        for_batches = fastest_on_workload(offer, chosen.name, batch_workload, current_cpu())
    return OpenedVariant(chosen.name, chosen.sessions, skipped, reason, for_batches)
