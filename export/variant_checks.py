"""What checking and timing a variant means for a task, behind one small interface.

The optimize driver (``export.optimize``) is the same for every task: build the variant files,
measure them against PyTorch, time them, record them. A ``VariantChecker`` supplies the
task-specific parts: how to run the engine on given graph files, how to compare it with the
reference on the export's check set, and which calls to time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from engine.artifact import Artifact
from engine.artifact_model import ArtifactModel
from engine.classifier import Classifier
from engine.cpu import current_cpu
from engine.embedder import Embedder
from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT
from engine.pooling import l2_normalize
from engine.seq2seq import Seq2SeqLM
from engine.session import RuntimeOptions
from engine.variants import FP32, INT8, VariantFigures, VariantSpeed
from export.check_set import SENTENCES, check_texts
from export.classification import ClassificationExporter, ClassifierReference, check_set_outputs
from export.embedding_variants import (
    MemoizedEmbeddingReference,
    embedding_figures,
    embedding_workloads,
    load_embedding_reference,
)
from export.errors import ExportError
from export.gates import measure_figures
from export.int8_search import SearchProbe
from export.parity import OutputPair
from export.seq2seq import Seq2SeqExporter
from export.seq2seq_variants import MemoizedReference, seq2seq_figures, seq2seq_workloads
from export.timing import TimingPlan, time_alternating

# Calibration texts run through the engine in batches of this size, as a user's batch would.
CALIBRATION_BATCH = 32
# Texts the sensitivity of each matmul is measured on: enough to rank them, few enough that one
# trial per matmul stays in seconds.
SENSITIVITY_SAMPLE = 64


# Timed rounds when the int8 search compares two candidates' speed: a short comparison, since
# the variants' ranking is timed afterwards with the optimize's own runs.
SEARCH_TIMING_RUNS = 3


class VariantChecker(ABC):
    """Task-specific steps of checking a variant.

    ``calibration`` are texts beyond the export's check set that a task may gate on and
    calibrate with (a classifier does; see ``export.calibration``).
    """

    task: str
    engine_class: type[ArtifactModel]

    def __init__(self, calibration: Sequence[str] = (), search_timing_runs: int = SEARCH_TIMING_RUNS) -> None:
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
        """How the accuracy-aware int8 search judges a graph; None where the task has none."""
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
        error is measured on."""
        options = RuntimeOptions(provider="cpu", verify_hashes=False)

        def engine(path: Path) -> Any:
            return self.open(artifact, {"model": path.name}, options, INT8)

        def latency_ms(path: Path) -> float:
            workloads = {"trial": self.workloads(engine(path))}
            return measure_speeds(workloads, runs=self.search_timing_runs)["trial"].score_ms

        fp32 = self.open(artifact, {"model": artifact.manifest.graphs["model"].file}, options, FP32)

        def feeds(texts: Sequence[str]) -> dict[str, np.ndarray]:
            return fp32.session.select_inputs(fp32.tokenizer.encode(list(texts)).feeds())

        texts = check_texts(artifact.manifest.max_length) + self.calibration
        sample = sorted(texts[:: max(1, len(texts) // SENSITIVITY_SAMPLE)], key=len)
        return SearchProbe(
            figures=lambda path: self.figures(engine(path), reference),
            latency_ms=latency_ms,
            feeds=[feeds([text]) for text in texts],
            sample_feeds=[
                feeds(sample[start : start + CALIBRATION_BATCH])
                for start in range(0, len(sample), CALIBRATION_BATCH)
            ],
            scores=scores(fp32),
        )


class ClassifierChecker(VariantChecker):
    """The export's check set at batch 1 and padded, plus the calibration texts in batches."""

    task = TASK_CLASSIFICATION
    engine_class = Classifier

    def load_reference(self, model: str) -> MemoizedReference:
        return MemoizedReference(ClassificationExporter().load_reference(model), kept=("logits",))

    def on_cuda(self, engine: Classifier) -> bool:
        return engine.session.on_cuda

    def figures(self, engine: Classifier, reference: ClassifierReference) -> VariantFigures:
        pairs = check_set_outputs(engine, reference) + self.calibration_outputs(engine, reference)
        return measure_figures(pairs, engine.scores, multi_label=engine.activation == "sigmoid")

    def calibration_outputs(
        self, engine: Classifier, reference: ClassifierReference
    ) -> list[OutputPair]:
        """PyTorch on each text alone (no padding) vs the engine in batches, as users run it."""
        if not self.calibration:
            return []
        ours = engine.logits(self.calibration, batch_size=CALIBRATION_BATCH)
        return [
            OutputPair(f"calibration[{index}]", text, reference.logits([text])[0], ours[index])
            for index, text in enumerate(self.calibration)
        ]

    def search_probe(self, artifact: Artifact, reference: ClassifierReference) -> SearchProbe:
        """A matmul's error is measured on the scores (softmax or sigmoid of the logits)."""
        return self.text_search_probe(artifact, reference, lambda fp32: fp32.scores)

    def workloads(self, engine: Classifier) -> dict[str, Callable[[], object]]:
        short = [SENTENCES[1]]
        long = check_texts(engine.tokenizer.max_length)
        return {
            "b1_short": lambda: engine.logits(short),
            f"batch{len(long)}_long": lambda: engine.logits(long, batch_size=len(long)),
        }


class Seq2SeqChecker(VariantChecker):
    """T5: the export's parity set plus greedy decoding along PyTorch's path, per token."""

    task = TASK_TEXT2TEXT
    engine_class = Seq2SeqLM

    def load_reference(self, model: str) -> MemoizedReference:
        return MemoizedReference(Seq2SeqExporter().load_reference(model))

    def on_cuda(self, engine: Seq2SeqLM) -> bool:
        return engine.graphs.on_cuda

    def figures(self, engine: Seq2SeqLM, reference: MemoizedReference) -> VariantFigures:
        return seq2seq_figures(engine, reference)

    def workloads(self, engine: Seq2SeqLM) -> dict[str, Callable[[], object]]:
        return seq2seq_workloads(engine)


class EmbeddingChecker(VariantChecker):
    """Sentence embeddings: cosine to sentence-transformers on the check set, the retrieval set
    and the calibration texts, and retrieval ranking."""

    task = TASK_FEATURE_EXTRACTION
    engine_class = Embedder

    def load_reference(self, model: str) -> MemoizedEmbeddingReference:
        return load_embedding_reference(model)

    def on_cuda(self, engine: Embedder) -> bool:
        return engine.session.on_cuda

    def figures(self, engine: Embedder, reference: MemoizedEmbeddingReference) -> VariantFigures:
        return embedding_figures(engine, reference, self.calibration)

    def search_probe(
        self, artifact: Artifact, reference: MemoizedEmbeddingReference
    ) -> SearchProbe:
        """A matmul's error is measured on the token embeddings scaled to unit length (their
        direction is what the pooled, normalized sentence vector and its cosine are made of),
        one row of all its tokens per text, so the search takes each text's largest change."""
        return self.text_search_probe(artifact, reference, lambda fp32: _unit_tokens_per_text)

    def workloads(self, engine: Embedder) -> dict[str, Callable[[], object]]:
        return embedding_workloads(engine)


def _unit_tokens_per_text(hidden: np.ndarray) -> np.ndarray:
    """``[batch, seq, hidden]`` token embeddings as ``[batch, seq * hidden]`` unit vectors."""
    return l2_normalize(hidden).reshape(len(hidden), -1)


# Below the base class it subclasses (export/tasks' task table replaces this import).
from export.tasks.reranking_checks import RerankerChecker  # noqa: E402

VARIANT_CHECKERS: dict[str, type[VariantChecker]] = {
    ClassifierChecker.task: ClassifierChecker,
    Seq2SeqChecker.task: Seq2SeqChecker,
    EmbeddingChecker.task: EmbeddingChecker,
    RerankerChecker.task: RerankerChecker,
}


def variant_checker(
    task: str, calibration: Sequence[str] = (), search_timing_runs: int = SEARCH_TIMING_RUNS
) -> VariantChecker:
    """The checker for ``task``; one that gates on texts also uses ``calibration``.

    ``search_timing_runs``: timed rounds when the int8 search compares candidates' speed.

    Raises:
        ExportError: variants are not supported for this task yet.
    """
    if task not in VARIANT_CHECKERS:
        raise ExportError(
            f"Optimized variants are not available for '{task}' artifacts yet (supported: "
            f"{', '.join(VARIANT_CHECKERS)})."
        )
    return VARIANT_CHECKERS[task](calibration, search_timing_runs)


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
        name: VariantSpeed(latency_ms=values, runs=runs, cpu=cpu) for name, values in latency.items()
    }
