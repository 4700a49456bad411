"""Latency measurement: contenders alternate round by round after a warm-up.

The one timing code of the house: the optimizer and the benchmarks time variants and contenders
with it, and a load re-times variants with it on a CPU they were not timed on
(:mod:`engine.variants.retime`).

Alternating (instead of timing contender A fully, then B) spreads slow drifts of a shared machine
(another process waking up, CPU frequency changes) evenly over all contenders, so their ratios
hold even when absolute times drift. Each turn starts with one untimed call: ONNX Runtime's idle
threads keep spinning for a while after a run, and without that call a contender would pay for
the previous contender's spinning threads, a cost no single-model user ever sees.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.checks import check_int
from engine.errors import InputError


@dataclass(frozen=True)
class TimingPlan:
    """How many calls are made and timed per contender.

    Attributes:
        warmup: untimed calls per contender before the first round (arena, caches, lazy init).
        rounds: alternating rounds, at most.
        min_rounds: rounds always run, even past ``budget_s``.
        timed_per_turn: timed calls per contender per round, after its one untimed settle call.
        budget_s: wall time for one workload after which no new round starts.
    """

    warmup: int = 3
    rounds: int = 20
    min_rounds: int = 5
    timed_per_turn: int = 2
    budget_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("warmup", "rounds", "min_rounds", "timed_per_turn"):
            check_int(f"TimingPlan.{name}", getattr(self, name), 0 if name == "warmup" else 1)
        if self.min_rounds > self.rounds:
            raise InputError(f"min_rounds ({self.min_rounds}) exceeds rounds ({self.rounds}).")


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles of one contender's timed calls, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    samples: int

    @classmethod
    def of(cls, seconds: list[float]) -> LatencyStats:
        if not seconds:
            raise InputError("No timed calls to summarize.")
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()), float(ms.min()), ms.size)


def time_alternating(
    calls: Mapping[str, Callable[[], object]],
    plan: TimingPlan,
    on_round: Callable[[], None] | None = None,
) -> dict[str, LatencyStats]:
    """Time each call in ``calls`` over alternating rounds; returns their statistics by name.

    Each round runs the contenders in a fresh (seeded) random order, so none always follows the
    same other one: a rotation would keep the cyclic order, and whatever one contender leaves
    behind (caches, threads, allocator state) would always be billed to the same next one.
    The garbage collector is paused during each timed call, as ``timeit`` does, so a collection
    triggered by one contender's garbage is not billed to the next.
    """
    names = list(calls)
    for name in names:
        for _ in range(plan.warmup):
            calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0)
    started = time.perf_counter()
    for index in range(plan.rounds):
        if index >= plan.min_rounds and time.perf_counter() - started > plan.budget_s:
            break
        for name in order.sample(names, len(names)):
            samples[name].extend(_turn(calls[name], plan.timed_per_turn))
        if on_round is not None:
            on_round()
    return {name: LatencyStats.of(values) for name, values in samples.items()}


def time_workloads(
    calls: Mapping[str, Mapping[str, Callable[[], object]]], plan: TimingPlan
) -> dict[str, dict[str, LatencyStats]]:
    """Each contender's named workloads (every contender has the same names), the contenders
    alternating (:func:`time_alternating`) workload by workload: contender -> workload -> stats.
    """
    workloads = list(next(iter(calls.values()), {}))
    stats = {
        workload: time_alternating({name: named[workload] for name, named in calls.items()}, plan)
        for workload in workloads
    }
    return {name: {workload: stats[workload][name] for workload in workloads} for name in calls}


def _turn(call: Callable[[], object], timed: int) -> list[float]:
    call()  # settle: let the previous contender's threads go idle on this contender's time
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        durations = []
        for _ in range(timed):
            start = time.perf_counter()
            call()
            durations.append(time.perf_counter() - start)
        return durations
    finally:
        if gc_was_enabled:
            gc.enable()


def time_repeated(call: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best time of ``repeats`` calls after ``warmup``: for hardware peaks, where min is the
    point."""
    for _ in range(warmup):
        call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best
