"""``auto`` on a CPU the variants were not timed on: time them here, briefly, and say so.

``onnx-engine optimize`` ranks variants by timings on the machine that ran it, and the fastest
variant there need not be the fastest here (int8 gains 9x over fp32 on a Xeon with AMX, ~3x on
an EPYC without it). So when the manifest's timings come from another CPU (or do not say which),
``auto`` loads every passing CPU variant, times a few short calls of each, keeps the fastest open
and logs what it picked and why. ``onnx-engine optimize ARTIFACT --retime`` records timings for
this CPU in the manifest, which makes later loads skip this.
"""

from __future__ import annotations

import logging
import math

from engine.artifact import Artifact
from engine.cpu import CpuInfo, current_cpu
from engine.options import RuntimeOptions
from engine.timing import TimingPlan, time_workloads
from engine.variants.choice import Offer
from engine.variants.records import AUTO, TARGET_CPU, VariantRecord, VariantSpeed
from engine.variants.sessions import ModelFactory, VariantSessions, open_graphs, options_for

logger = logging.getLogger(__name__)

# Rounds of every variant's calls, alternating, after one warm-up: a load must stay short, and
# the gap that decides a choice (int8 vs fp32: 2-9x) is far wider than the noise of 3 rounds.
RETIME_ROUNDS = 3
RETIME_PLAN = TimingPlan(warmup=1, rounds=RETIME_ROUNDS, min_rounds=RETIME_ROUNDS, timed_per_turn=1,
                         budget_s=math.inf)


def timed_elsewhere(candidates: list[VariantRecord], cpu: CpuInfo) -> list[VariantRecord]:
    """The candidates whose CPU timings were not taken on ``cpu`` (or not taken at all)."""
    return [
        record for record in candidates
        if TARGET_CPU not in record.speeds or not record.speeds[TARGET_CPU].taken_on(cpu)
    ]


def retimed_auto(
    build: ModelFactory,
    artifact: Artifact,
    offer: Offer,
    options: RuntimeOptions,
    cpu: CpuInfo | None = None,
) -> VariantSessions | None:
    """The sessions of the fastest passing CPU variant as timed here, or None where the manifest
    can decide. ``build`` makes the model whose timing calls time a candidate.

    None when the variant is not ``auto``, there is only one candidate, or every candidate was
    timed on this CPU. Only for ONNX Runtime's CPU provider (the caller's check): recorded
    timings are CPU timings, and say nothing for CUDA or for provider='openvino'.

    Raises:
        ArtifactError: a variant file is missing or changed (with ``verify_hashes``).
    """
    if offer.requested != AUTO:
        return None
    candidates = list(offer.usable_on_cpu)
    cpu = cpu or current_cpu()
    foreign = timed_elsewhere(candidates, cpu)
    if len(candidates) < 2 or not foreign:
        return None
    opened = {
        record.name: open_graphs(artifact, record.graphs, options_for(record, options))
        for record in candidates
    }
    stats = time_workloads({
        name: build(artifact, sessions, options, name, True).timing_calls()
        for name, sessions in opened.items()
    }, RETIME_PLAN)
    speeds = {
        name: VariantSpeed({workload: round(figures.p50_ms, 4) for workload, figures in
                            named.items()}, RETIME_PLAN.rounds, cpu.to_dict())
        for name, named in stats.items()
    }
    best = min(speeds, key=lambda name: speeds[name].score_ms)
    logger.warning(
        "variant='auto': the manifest's CPU timings of %s were taken on %s, not on this CPU, %s. "
        "Re-timed here (%s): picked '%s'. Run 'onnx-engine optimize %s --retime' to record "
        "timings for this CPU and skip this at load.",
        ", ".join(record.name for record in foreign),
        _recorded_cpus(foreign),
        cpu.describe(),
        ", ".join(f"{name} {speed.score_ms:.2f} ms" for name, speed in speeds.items()),
        best,
        artifact.path,
    )
    return VariantSessions(best, opened[best])


def _recorded_cpus(records: list[VariantRecord]) -> str:
    seen = []
    for record in records:
        speed = record.speeds.get(TARGET_CPU)
        text = "an unrecorded CPU" if speed is None or speed.cpu is None else \
            CpuInfo.from_dict(speed.cpu).describe()
        if text not in seen:
            seen.append(text)
    return " / ".join(seen) if any(record.speeds for record in records) else "no CPU (untimed)"
