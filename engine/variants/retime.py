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
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from engine.artifact import Artifact
from engine.cpu import CpuInfo, current_cpu
from engine.session import CPU, RuntimeOptions, requested_providers
from engine.variants.sessions import open_graphs, openvino_unusable_reason, options_for
from engine.variants.choice import (
    AUTO,
    TARGET_CPU,
    VariantRecord,
    VariantSpeed,
    usable_variants,
)

if TYPE_CHECKING:
    from engine.tasks.base import ArtifactModel

logger = logging.getLogger(__name__)

# Rounds of every variant's calls, alternating, after one warm-up: a load must stay short, and
# the gap that decides a choice (int8 vs fp32: 2-9x) is far wider than the noise of 3 rounds.
RETIME_ROUNDS = 3


def timed_elsewhere(candidates: list[VariantRecord], cpu: CpuInfo) -> list[VariantRecord]:
    """The candidates whose CPU timings were not taken on ``cpu`` (or not taken at all)."""
    return [
        record for record in candidates
        if TARGET_CPU not in record.speeds or not record.speeds[TARGET_CPU].taken_on(cpu)
    ]


def retimed_auto(
    cls: type[ArtifactModel],
    artifact: Artifact,
    options: RuntimeOptions,
    cpu: CpuInfo | None = None,
) -> ArtifactModel | None:
    """The fastest passing CPU variant as timed here, or None where the manifest can decide.

    None when the variant is not ``auto``, the session may run on another provider than ONNX
    Runtime's CPU one, there is only one candidate, or every candidate was timed on this CPU.

    Raises:
        ArtifactError: a variant file is missing or changed (with ``verify_hashes``).
    """
    # Recorded timings are CPU timings: they say nothing for CUDA, or for provider='openvino'
    # (which runs the exported graphs at the precision the user set).
    if options.variant != AUTO or requested_providers(options.provider) != [CPU]:
        return None
    candidates = usable_variants(
        artifact.manifest, TARGET_CPU, openvino_unusable_reason(artifact, AUTO)
    )
    cpu = cpu or current_cpu()
    foreign = timed_elsewhere(candidates, cpu)
    if len(candidates) < 2 or not foreign:
        return None
    models = {
        record.name: cls.from_sessions(
            artifact, open_graphs(artifact, record.graphs, options_for(record, options)), options,
            record.name, checked=True,
        )
        for record in candidates
    }
    speeds = time_calls({name: model.timing_calls() for name, model in models.items()}, cpu)
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
    return models[best]


def time_calls(
    calls: Mapping[str, Mapping[str, Callable[[], object]]], cpu: CpuInfo,
    rounds: int = RETIME_ROUNDS,
) -> dict[str, VariantSpeed]:
    """Median latency of each variant's named calls, variants alternating within each round."""
    samples: dict[str, dict[str, list[float]]] = {
        name: {call: [] for call in named} for name, named in calls.items()
    }
    for round_index in range(rounds + 1):  # round 0 warms up
        for name, named in calls.items():
            for call_name, call in named.items():
                start = time.perf_counter()
                call()
                if round_index:
                    samples[name][call_name].append((time.perf_counter() - start) * 1000.0)
    return {
        name: VariantSpeed(
            {call: round(sorted(values)[len(values) // 2], 4) for call, values in named.items()},
            rounds,
            cpu.to_dict(),
        )
        for name, named in samples.items()
    }


def _recorded_cpus(records: list[VariantRecord]) -> str:
    seen = []
    for record in records:
        speed = record.speeds.get(TARGET_CPU)
        text = "an unrecorded CPU" if speed is None or speed.cpu is None else \
            CpuInfo.from_dict(speed.cpu).describe()
        if text not in seen:
            seen.append(text)
    return " / ".join(seen) if any(record.speeds for record in records) else "no CPU (untimed)"
