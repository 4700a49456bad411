"""``auto`` never trusts an accuracy it has not seen on this kind of machine.

A lossy variant's gate (int8, fp16, bf16) was measured on the machine that ran ``optimize``; its
kernels differ by instruction set (``engine.verification.machine``). So before ``auto`` may pick
one on a machine of another architecture or ISA class than that one, and than every machine with a
recorded verdict (``verdicts.json``), the variant is re-run here against the PyTorch outputs
the artifact stores and judged by its own gate. One that fails is left out of ``auto`` (the log
and the model's ``variant_reason`` say why); asked for by name it still loads, with a warning
naming the failed figure. A verdict recorded for this machine kind (by ``onnx-engine verify`` or
an earlier load) counts wherever there is one: a variant that failed here is skipped even on the
machine that ran ``optimize``. Exact variants (fused: held to fp32's |Δ|) are not re-gated at
load; ``onnx-engine verify`` checks them too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import engine.verification.machine as machine_kind
from engine.artifact import Artifact
from engine.cpu import CpuInfo
from engine.errors import OnnxEngineError
from engine.options import RuntimeOptions
from engine.variants.choice import Offer
from engine.variants.records import AUTO, TARGET_CPU, VariantRecord
from engine.variants.sessions import ModelFactory
from engine.verification.machine import MachineKind
from engine.verification.reference_check import check_variant, has_references
from engine.verification.verdicts import Verdict, VerdictCache

logger = logging.getLogger(__name__)


def gated_at_optimize_here(record: VariantRecord, machine: MachineKind) -> bool:
    """Whether ``optimize`` gated ``record`` on a CPU of this machine's ISA class (its CPU
    timings, taken in the same run, record that CPU; without them it is unknown: no)."""
    speed = record.speeds.get(TARGET_CPU)
    return speed is not None and speed.cpu is not None and machine.same_isa_as(
        CpuInfo.from_dict(speed.cpu))


def regated_for_this_machine(
    build: ModelFactory,
    artifact: Artifact,
    offer: Offer,
    options: RuntimeOptions,
) -> tuple[Offer, str]:
    """``offer`` with the lossy variants that fail their gate on this machine marked failed
    (for ``auto``), and what was skipped or warned about ("" when nothing).

    Only for ONNX Runtime's CPU provider (the caller's check): on CUDA the CPU kernels' accuracy
    says nothing. A variant that cannot be run here (a graph or the references unreadable) is
    skipped like one that fails. ``build`` makes the model a candidate is checked with.
    """
    records = offer.records
    if offer.requested != AUTO:
        return offer, _warn_if_failed_here(artifact, records, offer.requested)
    lossy = [
        record for record in offer.usable_on_cpu if record.gate is not None and record.gate.lossy
    ]
    if not lossy:  # nothing to re-check: no need to read this machine's identity
        return offer, ""
    machine = machine_kind.current_machine()
    cache = VerdictCache.read(artifact.path, artifact.manifest, machine)
    known = {record.name: cache.verdict(record, record.gate) for record in lossy
             if record.gate is not None}
    # A verdict recorded on this machine kind (by verify or an earlier load) outranks the
    # optimize gate: a variant that failed here is skipped even where optimize gated it.
    candidates = [record for record in lossy
                  if known[record.name] is not None or not gated_at_optimize_here(record, machine)]
    if not candidates:
        return offer, ""
    failed: dict[str, str] = {}
    fresh: dict[str, Verdict] = {}
    for record in candidates:
        verdict = known[record.name]
        if verdict is None:
            if not has_references(artifact):
                logger.warning(
                    "variant='auto': '%s' was gated on another kind of machine than this one "
                    "(%s), and %s has no stored references to re-check it: its export-time gate "
                    "is trusted. Re-export the artifact to store them.",
                    record.name, machine.describe(), artifact.path)
                continue
            try:
                verdict = check_variant(build, artifact, record, options)
            except OnnxEngineError as error:  # a graph this runtime cannot load or run
                failed[record.name] = f"cannot be re-checked on this machine: {error}"
                continue
            fresh[record.name] = verdict
            logger.warning(
                "variant='auto': '%s' was gated on another kind of machine; re-gated on this one "
                "(%s) against the stored PyTorch references in %.2f s: %s.", record.name,
                machine.describe(), verdict.seconds,
                "passed" if verdict.passed else f"FAILED ({verdict.reason})")
        if not verdict.passed:
            failed[record.name] = (f"failed its gate on this machine ({machine.describe()}): "
                                   f"{verdict.reason}")
    cache.record(fresh)
    if not failed:
        return offer, ""
    for name, reason in failed.items():
        logger.warning("variant='auto' skips '%s': %s", name, reason)
    regated = {
        name: replace(record, passed=False, reason=failed[name]) if name in failed else record
        for name, record in records.items()
    }
    usable = tuple(record for record in offer.usable_on_cpu if record.name not in failed)
    return (replace(offer, records=regated, usable_on_cpu=usable),
            "; ".join(f"'{name}' skipped: {reason}" for name, reason in failed.items()))


def _warn_if_failed_here(
    artifact: Artifact, records: Mapping[str, VariantRecord], requested: str
) -> str:
    """A warning (logged and returned) where the variant asked for by name has a recorded
    failed verdict on this machine kind; it still loads."""
    record = records.get(requested)
    if record is None or record.gate is None or not has_references(artifact):
        return ""
    machine = machine_kind.current_machine()
    verdict = VerdictCache.read(artifact.path, artifact.manifest, machine).verdict(
        record, record.gate)
    if verdict is None and record.gate.lossy and not gated_at_optimize_here(record, machine):
        logger.info("'%s' was asked for by name; its accuracy was not checked on this kind of "
                    "machine (%s): 'onnx-engine verify %s' checks it.", requested,
                    machine.describe(), artifact.path)
    if verdict is None or verdict.passed:
        return ""
    note = (f"'{requested}' was asked for by name and is loaded, but it FAILED its accuracy gate "
            f"on this machine ({machine.describe()}): {verdict.reason}")
    logger.warning("%s", note)
    return note
