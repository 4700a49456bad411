"""What checking and timing a variant means for a task, behind one small interface.

The optimize driver (``export.variants.optimize``) is the same for every task: build the variant
files, measure them against PyTorch, time them, record them. A ``VariantChecker`` supplies the
task-specific parts: how to run the engine on given graph files, how to compare it with the
reference on the export's check set, and which calls to time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.artifact import Artifact
from engine.cpu import current_cpu
from engine.options import RuntimeOptions
from engine.tasks.base import ArtifactModel
from engine.timing import TimingPlan, time_alternating
from engine.variants.records import FP32, INT8, VariantFigures, VariantSpeed
from export.check_set import check_texts
from export.variants.int8_search import SearchProbe

# Calibration texts run through the engine in batches of this size, as a user's batch would.
CALIBRATION_BATCH = 32
# Texts the sensitivity of each matmul is measured on: enough to rank them, few enough that one
# trial per matmul stays in seconds.
SENSITIVITY_SAMPLE = 64


# Timed rounds when the int8 search compares two candidates' speed: a short comparison, since
# the variants' ranking is timed afterwards with the optimize's own runs.
SEARCH_TIMING_RUNS = 3


class VariantChecker(ABC):
    """Task-specific steps of checking a variant; each task's module defines one (see
    ``export.tasks``).

    ``calibration`` are texts beyond the export's check set that a task may gate on and
    calibrate with (a classifier does; see ``export.variants.calibration``).
    """

    engine_class: type[ArtifactModel]

    def __init__(
        self, calibration: Sequence[str] = (), search_timing_runs: int = SEARCH_TIMING_RUNS
    ) -> None:
        self.calibration = list(calibration)
        self.search_timing_runs = search_timing_runs

    @abstractmethod
    def load_reference(self, model: str) -> Any:
        """The PyTorch model every variant is compared with."""

    def open(
        self, artifact: Artifact, graphs: Mapping[str, str], options: RuntimeOptions, variant: str
    ) -> Any:
        """The engine object running exactly ``graphs`` (role -> file), with no gate applied."""
        return self.engine_class.from_graphs(artifact, graphs, options, variant)

    @abstractmethod
    def on_cuda(self, engine: Any) -> bool:
        """Whether the engine object really runs on CUDA."""

    @abstractmethod
    def figures(self, engine: Any, reference: Any) -> VariantFigures:
        """The engine's outputs vs the reference's on the export's check set."""

    @abstractmethod
    def workloads(self, engine: Any) -> dict[str, Callable[[], object]]:
        """Named calls to time: a short input at batch 1 and a long padded batch."""

    def search_probe(self, artifact: Artifact, reference: Any) -> SearchProbe | None:
        """How the accuracy-aware int8 search judges a graph (run by ONNX Runtime on the CPU
        until the probe is re-pointed); None where the task has none."""
        return None

    def text_search_probe(
        self,
        artifact: Artifact,
        reference: Any,
        scores: Callable[[Any], Callable[[np.ndarray], np.ndarray]],
    ) -> SearchProbe:
        """The probe of a one-graph text model: gate figures, timings, and the check set plus
        calibration texts tokenized one by one (static ranges) and in sorted batches (to rank
        matmuls on). ``scores(fp32_engine)`` turns the graph's first output into what a matmul's
        error is measured on. The fp32 graph that tokenizes and scores always runs on ONNX
        Runtime, whatever options the trials are re-pointed at."""
        fp32_options = RuntimeOptions(provider="cpu", verify_hashes=False)

        def engine(path: Path, options: RuntimeOptions) -> Any:
            return self.open(artifact, {"model": path.name}, options, options.variant or INT8)

        def latency_ms(path: Path, options: RuntimeOptions) -> float:
            workloads = {"trial": self.workloads(engine(path, options))}
            return measure_speeds(workloads, runs=self.search_timing_runs)["trial"].score_ms

        fp32 = self.open(artifact, {"model": artifact.manifest.graphs["model"].file},
                         fp32_options, FP32)

        def feeds(texts: Sequence[str]) -> dict[str, np.ndarray]:
            return fp32.session.select_inputs(fp32.tokenizer.encode(list(texts)).feeds())

        texts = check_texts(artifact.manifest.max_length) + self.calibration
        sample = sorted(texts[:: max(1, len(texts) // SENSITIVITY_SAMPLE)], key=len)
        return SearchProbe(
            judge=lambda path, options: self.figures(engine(path, options), reference),
            time=latency_ms,
            feeds=[feeds([text]) for text in texts],
            sample_feeds=[
                feeds(sample[start : start + CALIBRATION_BATCH])
                for start in range(0, len(sample), CALIBRATION_BATCH)
            ],
            scores=scores(fp32),
            options=fp32_options,
        )


def measure_speeds(
    workloads: Mapping[str, Mapping[str, Callable[[], object]]], runs: int
) -> dict[str, VariantSpeed]:
    """Median latency of every variant's workloads, the variants alternating round by round.

    Alternating spreads the drift of a shared machine over all variants, so their ranking holds
    even when absolute times move between runs.
    """
    plan = TimingPlan(warmup=1, rounds=runs, min_rounds=runs, timed_per_turn=1, budget_s=3600.0)
    names = {workload for calls in workloads.values() for workload in calls}
    latency: dict[str, dict[str, float]] = {variant: {} for variant in workloads}
    for workload in sorted(names):
        calls = {variant: calls[workload] for variant, calls in workloads.items()}
        for variant, stats in time_alternating(calls, plan).items():
            latency[variant][workload] = round(stats.p50_ms, 4)
    cpu = current_cpu().to_dict()  # timings rank variants only on the CPU that took them
    return {
        name: VariantSpeed(latency_ms=values, runs=runs, cpu=cpu)
        for name, values in latency.items()
    }
