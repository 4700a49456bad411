"""Export-time steps for cross-encoder rerankers (task ``text-ranking``).

A reranker is a single-label ``*ForSequenceClassification`` read on (query, document) pairs, so
the classifier's export (Optimum's ``text-classification`` graph, labels in config.json) is
reused; what differs is the reference and the check. The reference is sentence-transformers'
``CrossEncoder`` on the model folder, a saved CrossEncoder or a plain classifier alike: its
activation (sigmoid by default for one label, or the one the folder saved) is recorded in the
artifact's config, and parity is held to ``CrossEncoder.predict`` on query/document pairs.
Variants are gated per query on scores and rank order: every check query with every check
document, batched per query as ``rank`` runs them, against CrossEncoder's logits, by the figures
``verify`` computes from the stored references (``engine.tasks.reranking.ranking_figures``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.tasks.reranking import ACTIVATION_KEY, TASK_RANKING, Reranker, ranking_figures
from engine.variants.records import (
    BF16,
    FP16,
    FUSED,
    INT8,
    INT8_OPENVINO,
    VariantFigures,
    VariantGate,
)
from engine.verification.references import write_references
from export.check_set import SENTENCES, check_texts
from export.dependencies import require
from export.errors import ExportError
from export.parity import ParityReport
from export.retrieval_set import DOCUMENTS, QUERIES
from export.tasks.base import exported_fp32, max_input_length, torch_no_grad
from export.tasks.classification import ClassificationExporter, ClassifierReference
from export.tasks.spec import ExportTask
from export.variants.checks import VariantChecker
from export.variants.memoized import MemoizedReference

# The bar: scores within 1e-5 of CrossEncoder.predict (fp32 ONNX Runtime vs PyTorch
# differ by ~1e-7 on the tiny models' sigmoid scores).
RANKING_ATOL = 1e-5
# CrossEncoder's activation modules, by the names the engine applies.
_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "none"}
# What a saved CrossEncoder folder says it is (sentence-transformers >= 4).
_SENTENCE_CONFIG = "config_sentence_transformers.json"

RANKING_GATES: dict[str, VariantGate] = {
    # Fusion only regroups fp32 arithmetic: as exact as the export, every top document kept.
    FUSED: VariantGate(max_abs_diff=1e-4, min_agreement=1.0),
    # Lossy variants are judged on scores, as the classifier's: with every score within b, two
    # documents more than 2b apart keep their order, and a changed top document at a wider
    # reference gap fails (VariantGate.violations). Near-ties (random weights are full of them)
    # may swap; agreement and top-10 overlap are reported for every variant.
    INT8: VariantGate(max_prob_diff=0.03, min_agreement=0.0),
    FP16: VariantGate(max_prob_diff=0.01, min_agreement=0.0),
    BF16: VariantGate(max_prob_diff=0.02, min_agreement=0.0),
    INT8_OPENVINO: VariantGate(max_prob_diff=0.03, min_agreement=0.0),  # int8's bar
}


@dataclass(frozen=True)
class RerankerReference(ClassifierReference):
    """The classifier as sentence-transformers' ``CrossEncoder`` runs it, with its activation."""

    cross_encoder: Any
    activation: str

    def predict(self, pairs: Sequence[tuple[str, str]], raw: bool = False,
                batch_size: int = 32) -> np.ndarray:
        """``CrossEncoder.predict`` of ``pairs`` (``raw``: with the identity, i.e. logits)."""
        identity = require("torch").nn.Identity() if raw else None
        with torch_no_grad():
            scores = self.cross_encoder.predict(
                [list(pair) for pair in pairs], batch_size=batch_size, activation_fn=identity,
                show_progress_bar=False, convert_to_numpy=True,
            )
        return np.asarray(scores, dtype=np.float32)


def check_queries(max_length: int) -> list[str]:
    """The retrieval queries, a non-ASCII one and one over the maximum length (so its pairs
    are cut longest-first on both sides)."""
    return [*QUERIES, SENTENCES[3], check_texts(max_length)[-1]]


def check_documents(max_length: int) -> list[str]:
    """The retrieval documents and the check set (the empty text, short, long, over-long)."""
    return [*DOCUMENTS, *check_texts(max_length)]


class RerankingExporter(ClassificationExporter):
    """A single-label classifier exported to rerank, checked against ``CrossEncoder``."""

    task = TASK_RANKING
    default_atol = RANKING_ATOL

    @classmethod
    def infers(cls, architecture: str, config: Mapping[str, Any]) -> bool:
        return False  # a plain one-label classifier stays text-classification unless asked

    @classmethod
    def claims(cls, model: str) -> bool:
        """A local folder saved by ``CrossEncoder.save_pretrained`` (its sentence-transformers
        config says ``"model_type": "CrossEncoder"``)."""
        path = Path(model).expanduser() / _SENTENCE_CONFIG
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("model_type") == "CrossEncoder"
        except (OSError, ValueError, AttributeError):
            return False

    def load_reference(self, model: str) -> RerankerReference:
        """Load the model as ``CrossEncoder(model)`` does.

        Raises:
            ExportError: it cannot be loaded, has more than one label, chains modules other
                than one sequence-classification Transformer, prompts by default, or applies
                an activation other than sigmoid or identity.
        """
        cross_encoder_class = require("sentence_transformers").CrossEncoder
        try:
            cross_encoder = cross_encoder_class(model, device="cpu")
        except (OSError, ValueError) as error:
            raise ExportError(f"Cannot load '{model}' as a cross-encoder: {error}") from error
        _check_cross_encoder(model, cross_encoder)
        torch_model, tokenizer = cross_encoder.model.eval(), cross_encoder.tokenizer
        if not tokenizer.is_fast:
            raise ExportError(
                f"'{model}' has no fast tokenizer (tokenizer.json); the engine needs one."
            )
        # CrossEncoder cuts pairs at the tokenizer's limit; below the position table's, if the
        # tokenizer names none. The reference is set to cut where the artifact will.
        length = max_input_length(torch_model, tokenizer)
        cross_encoder.max_seq_length = length
        activation = _ACTIVATIONS[type(cross_encoder.activation_fn).__name__]
        return RerankerReference(torch_model, tokenizer, length, cross_encoder, activation)

    def config_overrides(self, reference: RerankerReference) -> dict[str, Any]:
        return {**super().config_overrides(reference), ACTIVATION_KEY: reference.activation}

    def write_task_files(self, reference: RerankerReference, folder: Path) -> None:
        """Write ``references.npz``: CrossEncoder's logits of every check query with every
        check document (``Reranker.reference_figures`` re-checks variants against them)."""
        queries = check_queries(reference.max_length)
        documents = check_documents(reference.max_length)
        arrays = {"queries": np.array(queries), "documents": np.array(documents),
                  "logits": query_logits(reference, queries, documents)}
        write_references(folder, self.task, arrays)

    def check_parity(
        self, reference: RerankerReference, artifact_dir: Path, atol: float
    ) -> ParityReport:
        """Engine scores vs ``CrossEncoder.predict``: each query's documents batched as
        ``rank`` runs them, and check-set pairs one at a time."""
        return compare_reranker(exported_fp32(Reranker, artifact_dir), reference, atol)


def compare_reranker(
    reranker: Reranker, reference: RerankerReference, atol: float
) -> ParityReport:
    """Parity report of a loaded engine reranker (any variant) against CrossEncoder."""
    report = ParityReport(atol=atol)
    documents = check_documents(reference.max_length)
    for index, query in enumerate(check_queries(reference.max_length)):
        pairs = [(query, document) for document in documents]
        report.add(f"query[{index}]", query, reference.predict(pairs), reranker.predict(pairs))
    texts = check_texts(reference.max_length)
    for index, pair in enumerate(zip(texts, reversed(texts))):
        report.add(f"b1[{index}]", " / ".join(pair), reference.predict([pair]),
                   reranker.predict([pair], batch_size=1))
    return report


def query_logits(
    reference: RerankerReference | MemoizedReference,
    queries: Sequence[str],
    documents: Sequence[str],
) -> np.ndarray:
    """CrossEncoder's logits ``[queries, documents]``, each query's documents in one call."""
    return np.stack([reference.predict([(query, document) for document in documents], raw=True)
                     for query in queries])


def _check_cross_encoder(model: str, cross_encoder: Any) -> None:
    modules = [type(module).__name__ for module in cross_encoder]
    task = getattr(cross_encoder[0], "transformer_task", None)
    if modules != ["Transformer"] or task != "sequence-classification":
        raise ExportError(
            f"'{model}' chains the modules {modules} (task {task!r}); the engine reranks with "
            "one sequence-classification Transformer (a *ForSequenceClassification model)."
        )
    if cross_encoder.num_labels != 1:
        raise ExportError(
            f"'{model}' has {cross_encoder.num_labels} labels; a reranker scores with one "
            "(CrossEncoder.rank needs num_labels=1). Export it with --task text-classification."
        )
    if cross_encoder.default_prompt_name:
        raise ExportError(
            f"'{model}' prepends the prompt '{cross_encoder.default_prompt_name}' by default; the "
            "engine does not apply prompts. Export a model without a default prompt."
        )
    name = type(cross_encoder.activation_fn).__name__
    if name not in _ACTIVATIONS:
        raise ExportError(
            f"'{model}' applies the activation {name}; the engine applies "
            f"{' or '.join(_ACTIVATIONS)} (sigmoid or none). Save the CrossEncoder with one of "
            "them."
        )


class RerankerChecker(VariantChecker):
    """Every check query with every check document, batched per query as ``rank`` runs; PyTorch
    runs each query's pairs once per ``optimize`` (a memoized reference)."""

    engine_class = Reranker

    def load_reference(self, model: str) -> MemoizedReference:
        return MemoizedReference(RerankingExporter().load_reference(model), kept=("predict",))

    def on_cuda(self, engine: Reranker) -> bool:
        return engine.session.on_cuda

    def figures(self, engine: Reranker, reference: MemoizedReference) -> VariantFigures:
        queries = check_queries(reference.max_length)
        documents = check_documents(reference.max_length)
        return ranking_figures(query_logits(reference, queries, documents),
                               engine.query_logits(queries, documents), engine.scores, queries)

    def workloads(self, engine: Reranker) -> dict[str, Callable[[], object]]:
        short = [(QUERIES[0], DOCUMENTS[0])]
        long = [(QUERIES[0], text) for text in check_texts(engine.tokenizer.max_length)]
        return {
            "b1_short": lambda: engine.pair_logits(short),
            f"batch{len(long)}_long": lambda: engine.pair_logits(long, batch_size=len(long)),
        }


RANKING_EXPORT = ExportTask(
    exporter=RerankingExporter, checker=RerankerChecker, gates=RANKING_GATES,
    figure_names=("|Δlogit|", "|Δscore|"),
)
