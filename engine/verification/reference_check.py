"""Re-run one variant on this machine against the stored references and judge it by its gate.

Used by ``onnx-engine verify`` (every variant) and by ``auto`` on a machine whose kind the
lossy variants were not checked on (``engine.variants.regate``). The gate is the one the manifest
recorded for the variant (``optimize`` held it to that), judged by ``VariantGate.violations``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from engine.artifact import Artifact
from engine.errors import ArtifactError
from engine.manifest import TASK_FEATURE_EXTRACTION
from engine.options import RuntimeOptions
from engine.variants.records import VariantGate, VariantRecord
from engine.variants.sessions import ModelFactory, open_graphs, options_for
from engine.verification.reference_figures import TASK_FIGURES
from engine.verification.references import REFERENCES_NAME, read_references
from engine.verification.verdicts import Verdict, fingerprint

DEFAULT_PARITY_ATOL = 1e-4
# fp32 against the references it was exported with: the export's parity tolerance and no changed
# prediction; embeddings also keep the export's per-input cosine bar.
FP32_MIN_COSINE = 0.99999


def has_references(artifact: Artifact) -> bool:
    """Whether the artifact was exported with stored PyTorch outputs (older ones were not)."""
    return REFERENCES_NAME in artifact.manifest.files


def missing_references_message(artifact: Artifact) -> str:
    return (
        f"'{artifact.path}' has no stored PyTorch references ({REFERENCES_NAME}): it was exported "
        "before they were written. Re-export it with this version ('onnx-engine export MODEL "
        f"{artifact.path} --force', then optimize again), or check it against PyTorch where torch "
        f"is installed: 'onnx-engine verify {artifact.path} --against-pytorch'."
    )


def gate_for(artifact: Artifact, record: VariantRecord) -> VariantGate:
    """The gate ``record`` is judged by: its own (from optimize); fp32 the export's parity."""
    if record.gate is not None:
        return record.gate
    atol = float(artifact.manifest.parity.get("atol", DEFAULT_PARITY_ATOL))
    cosine = FP32_MIN_COSINE if artifact.manifest.task == TASK_FEATURE_EXTRACTION else None
    return VariantGate(max_abs_diff=atol, min_agreement=1.0, min_cosine=cosine)


def check_variant(
    build: ModelFactory,
    artifact: Artifact,
    record: VariantRecord,
    options: RuntimeOptions | None = None,
) -> Verdict:
    """Run ``record``'s graphs here on the stored references and judge it by its gate;
    ``build`` (the engine class's ``from_sessions``) makes the model that runs them.

    Raises:
        ArtifactError: the artifact has no references, or they are unreadable.
        CorruptArtifactError: ONNX Runtime cannot load a graph.
    """
    if not has_references(artifact):
        raise ArtifactError(missing_references_message(artifact))
    gate = gate_for(artifact, record)
    start = time.perf_counter()
    stored = read_references(artifact.path_of(REFERENCES_NAME), artifact.manifest.task)
    options = options_for(record, replace(options or RuntimeOptions(), provider="cpu",
                                          verify_hashes=False, variant=record.name))
    sessions = open_graphs(artifact, record.graphs, options, listed=False)
    model: Any = build(artifact, sessions, options, record.name, False)
    # A task outside TASK_FIGURES measures its own figures (its engine class's hook).
    task_figures = TASK_FIGURES.get(artifact.manifest.task)
    figures = task_figures(model, stored) if task_figures else model.reference_figures(stored)
    problems = gate.violations(figures)
    return Verdict(
        passed=not problems,
        reason="; ".join(problems),
        figures=figures,
        fingerprint=fingerprint(artifact.manifest, record, gate),
        seconds=round(time.perf_counter() - start, 3),
        checked_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
