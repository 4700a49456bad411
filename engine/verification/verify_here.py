"""``onnx-engine verify`` without PyTorch: file hashes, then every variant on this machine.

Each variant is re-run against the PyTorch outputs the export stored
(``engine.verification.references``) and judged by its own gate
(``engine.verification.reference_check``). Verdicts are kept per machine kind in ``verdicts.json``
(``engine.verification.verdicts``), so verifying again on the same kind of machine reports the
recorded verdict instead of re-running it (``force`` re-runs).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import engine.verification.machine as machine_kind
from engine.artifact import Artifact
from engine.errors import OnnxEngineError
from engine.manifest import ArtifactManifest
from engine.tasks import engine_class_for
from engine.variants.choice import openvino_unusable_reason, variant_records
from engine.variants.records import AUTO, FP32, RUNTIME_OPENVINO, TARGET_CPU, VariantGate
from engine.verification.file_hashes import FileHashes
from engine.verification.machine import MachineKind
from engine.verification.reference_check import (
    check_variant,
    gate_for,
    has_references,
    missing_references_message,
)
from engine.verification.references import REFERENCES_NAME
from engine.verification.verdicts import Verdict, VerdictCache

# Two variants' runs at once: each session's creation keeps about one core busy, so two overlap
# well on the smallest machines; more would only hold more sessions in memory at once.
VARIANTS_AT_ONCE = 2


@dataclass(frozen=True)
class VariantCheck:
    """One variant's outcome here: its verdict (``cached`` when recorded earlier on this machine
    kind), or why it could not run here; ``auto_eligible``: ``auto`` could pick it here."""

    name: str
    gate: VariantGate
    verdict: Verdict | None
    cached: bool = False
    not_run: str = ""
    auto_eligible: bool = False


@dataclass
class VerifyReport:
    """Everything ``verify`` found; ``passed`` needs clean hashes, references, and every variant
    ``auto`` could pick passing its gate here."""

    machine: MachineKind
    file_problems: list[str] = field(default_factory=list)
    missing_references: str = ""
    checks: list[VariantCheck] = field(default_factory=list)
    recorded: bool = False

    @property
    def failed_variants(self) -> list[VariantCheck]:
        return [check for check in self.checks
                if check.auto_eligible and check.verdict is not None and not check.verdict.passed]

    @property
    def passed(self) -> bool:
        return not (self.file_problems or self.missing_references or self.failed_variants)


def verify_here(path: str | Path, force: bool = False) -> VerifyReport:
    """Check hashes, then run every variant that can run on this machine against the stored
    references (unless a verdict for its files is recorded for this machine kind, or ``force``).

    Variants are run even when a hash differs, so the report shows whether the change also
    changes the outputs. The files are hashed in one thread while the variants run in others,
    two at a time (``engine.verification.file_hashes``): a session's creation and the hashing
    each keep about one core busy, so on two cores they overlap instead of adding up.

    Raises:
        ArtifactError: the folder or its manifest is missing or unreadable, or the references
            are unreadable.
    """
    # Not Artifact.open: it refuses a folder with a missing or resized file, which verify must
    # list (with the rest) instead.
    artifact = Artifact(Path(path), ArtifactManifest.read(Path(path)), verify_hashes=False)
    machine = machine_kind.current_machine()
    report = VerifyReport(machine)
    with ThreadPoolExecutor(1, thread_name_prefix="verify-hash") as hashing, \
            ThreadPoolExecutor(VARIANTS_AT_ONCE, thread_name_prefix="verify-run") as running:
        hashes = FileHashes(artifact.path, artifact.manifest, hashing)
        if not has_references(artifact):
            report.file_problems = hashes.problems()
            report.missing_references = missing_references_message(artifact)
            return report
        planned = _plan_checks(artifact, machine, hashes, running, force)
        fresh: dict[str, Verdict] = {}
        for check, pending in planned:
            if pending is not None:
                try:
                    verdict = fresh[check.name] = pending.result()
                except OnnxEngineError as error:  # a missing or unloadable file: a failure
                    # here, not recorded (the file may be mended)
                    verdict = Verdict(False, f"cannot run: {error}", None, "", 0.0, "")
                check = replace(check, verdict=verdict)
            report.checks.append(check)
        report.file_problems = hashes.problems()
    if fresh:
        report.recorded = VerdictCache.read(artifact.path, artifact.manifest, machine).record(fresh)
    return report


def _plan_checks(
    artifact: Artifact,
    machine: MachineKind,
    hashes: FileHashes,
    running: ThreadPoolExecutor,
    force: bool,
) -> list[tuple[VariantCheck, Future[Verdict] | None]]:
    """Each variant's check in the manifest's order: its recorded verdict, why it cannot run
    here, or its run started on ``running`` (the future of its verdict)."""
    engine_class = engine_class_for(artifact.manifest.task)
    # Spinning intra-op threads would take the cores from the variant running beside them.
    options = replace(engine_class.resolve_options(), spin_wait=False)
    records = variant_records(artifact.manifest)
    openvino_unusable = openvino_unusable_reason(records, AUTO)
    cache = VerdictCache.read(artifact.path, artifact.manifest, machine)
    planned: list[tuple[VariantCheck, Future[Verdict] | None]] = []
    for name, record in records.items():
        gate = gate_for(artifact, record)
        eligible = name == FP32 or record.passed
        if not record.suits(TARGET_CPU):
            planned.append((VariantCheck(name, gate, None, not_run=f"made for {record.target}"),
                            None))
            continue
        if record.runtime == RUNTIME_OPENVINO and openvino_unusable is not None:
            planned.append((VariantCheck(name, gate, None, not_run=openvino_unusable), None))
            continue
        # A verdict holds for the files the manifest lists; one whose files differ is run afresh.
        verdict = None if force else cache.verdict(record, gate)
        if verdict is not None and hashes.changed({*record.graphs.values(), REFERENCES_NAME}):
            verdict = None
        check = VariantCheck(name, gate, verdict, verdict is not None, auto_eligible=eligible)
        pending = None if verdict is not None else running.submit(
            check_variant, engine_class.from_sessions, artifact, record, options)
        planned.append((check, pending))
    return planned


def figures_text(gate: VariantGate, verdict: Verdict | None) -> str:
    """The measured figures the gate limits, e.g. ``|Δprob| 0.004 agree 100.0%``."""
    figures = verdict.figures if verdict is not None else None
    if figures is None:
        return "-"
    parts = []
    if gate.max_abs_diff is not None:
        parts.append(f"max |Δ| {figures.max_abs_diff:.2e}")
    if gate.max_prob_diff is not None:
        parts.append(f"|Δprob| {figures.max_prob_diff:.3g}")
    if gate.min_cosine is not None and figures.min_cosine is not None:
        parts.append(f"cos {figures.min_cosine:.5f}")
    if gate.min_retrieval_agreement is not None and figures.retrieval_agreement is not None:
        parts.append(f"top10 {figures.retrieval_agreement:.0%}")
    parts.append(f"agree {figures.agreement:.1%}")
    if gate.flip_margin is not None:
        parts.append(f"flip {figures.clearest_flip:.3g}")
    return " ".join(parts)


def report_table(report: VerifyReport) -> str:
    """Variant / figures / result lines, then what failed and whether verdicts were recorded."""
    lines = [f"machine: {report.machine.describe()}",
             f"{'variant':<8} {'figures (vs stored PyTorch outputs)':<52} {'result':<6} note"]
    for check in report.checks:
        verdict = check.verdict
        if verdict is None:
            result, note = "-", f"not run here: {check.not_run}"
        else:
            result = "pass" if verdict.passed else "FAIL"
            note = ("cached verdict for this machine (--force re-runs)" if check.cached
                    else "could not run here" if verdict.figures is None
                    else f"ran here in {verdict.seconds:.2f} s")
            if not check.auto_eligible:
                note += "; failed its gate at optimize, auto never picks it"
        lines.append(f"{check.name:<8} {figures_text(check.gate, verdict):<52} {result:<6} {note}")
    for check in report.failed_variants:
        reason = check.verdict.reason if check.verdict is not None else ""
        lines.append(f"variant '{check.name}' FAILED its gate here: {reason}")
    return "\n".join(lines)
