"""Cross-encoder reranking from an exported artifact, shaped exactly like sentence-transformers.

A reranker is a single-label sequence classifier read on (query, document) pairs. It shares the
one-graph run loop (:class:`~engine.tasks.base.TextGraphModel`) with the classifier, not the
classifier's surface: ``predict(pairs)`` returns ``CrossEncoder.predict``'s scores and
``rank(query, documents)`` its sorted ``{"corpus_id", "score"[, "text"]}`` list. The activation
comes from the artifact's config (written by the export from the CrossEncoder's own setting:
sigmoid by default for one label, identity when it was saved so). Its gate figures (rank order
and scores per query) are here too, torch-free, so ``optimize`` (against live PyTorch) and
``verify`` / ``auto`` (against the stored logits) hold a variant to the same figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engine.checks import check_choice
from engine.errors import CorruptArtifactError, InputError
from engine.numerics import sigmoid
from engine.options import RuntimeOptions
from engine.tasks.base import TextGraphModel, text_timing_calls
from engine.tasks.classification import check_top_k
from engine.tokenization import EncodedRow, TextInput, check_batch_size, checked_unicode
from engine.variants.records import VariantFigures
from engine.verification.gate_figures import TIE_TOLERANCE, figures_from_rows, top_k_overlap

# The manifest's task name of cross-encoder rerankers.
TASK_RANKING = "text-ranking"
# The config.json key the export records the CrossEncoder's activation under ("activation"
# alone is taken: DistilBERT's config uses it for its hidden activation).
ACTIVATION_KEY = "ranking_activation"
# What CrossEncoder applies to the logit: torch.nn.Sigmoid, or torch.nn.Identity ("none").
RANKING_ACTIVATIONS = ("sigmoid", "none")
# Documents per query whose overlap with the reference's best is reported.
RETRIEVAL_DEPTH = 10
Pair = tuple[str, str]


class Reranker(TextGraphModel):
    """A cross-encoder reranker on ONNX Runtime with tokenizers and NumPy only.

    ``predict(pairs)`` equals ``CrossEncoder.predict(pairs)`` and ``rank(query, documents)``
    equals ``CrossEncoder.rank``; pairs longer than ``max_length`` are cut longest-first, as
    CrossEncoder's tokenizer call does. ``pair_logits`` gives the raw scores behind them.
    """

    task = TASK_RANKING

    def _assemble(self, options: RuntimeOptions) -> None:
        super()._assemble(options)
        config = self.artifact.config()
        labels = config.get("id2label")
        if not isinstance(labels, Mapping) or len(labels) != 1:
            raise CorruptArtifactError(
                f"{self.artifact.path / 'config.json'}: a reranker scores with one label, the "
                f"config's id2label is {labels!r:.80}. Export a single-label model with "
                "--task text-ranking."
            )
        activation = config.get(ACTIVATION_KEY)
        if activation not in RANKING_ACTIVATIONS:
            raise CorruptArtifactError(
                f"{self.artifact.path / 'config.json'}: '{ACTIVATION_KEY}' must be one of "
                f"{', '.join(RANKING_ACTIVATIONS)}, got {activation!r}. Re-export the artifact "
                "with 'onnx-engine export MODEL --task text-ranking'."
            )
        self.activation: str = activation

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        return text_timing_calls(
            lambda texts, batch: self.pair_logits([(text, text) for text in texts], batch)
        )

    def pair_logits(self, pairs: Sequence[Pair], batch_size: int = 32) -> np.ndarray:
        """Raw logits ``[len(pairs)]`` of checked ``(query, document)`` tuples, in their order."""
        items: list[TextInput] = list(pairs)
        return _first_logits(self.run_batches(items, check_batch_size(batch_size), "logits"),
                             len(items))

    def pair_logits_encoded(self, rows: Sequence[EncodedRow], batch_size: int = 32) -> np.ndarray:
        """:meth:`pair_logits` of pairs already encoded (``tokenizer.encode_rows``, or a
        server's queue, which tokenizes each pair once)."""
        return _first_logits(self.run_encoded(rows, check_batch_size(batch_size), "logits"),
                             len(rows))

    def scores(self, logits: np.ndarray, activation: str | None = None) -> np.ndarray:
        """``activation`` (default: the model's) applied to ``logits``.

        Raises:
            InputError: ``activation`` is not sigmoid or none (softmax over one label is 1).
        """
        return _activated(logits, self.activation_for(activation))

    def activation_for(self, activation: str | None) -> str:
        """The activation ``activation`` names (any case); ``None`` is the model's own.

        Raises:
            InputError: not sigmoid or none.
        """
        return check_choice("activation", activation or self.activation, RANKING_ACTIVATIONS)

    def predict(
        self, pairs: object, batch_size: int = 32, activation: str | None = None
    ) -> np.ndarray | np.float32:
        """Scores of ``(query, document)`` pairs, as ``CrossEncoder.predict`` returns them.

        ``pairs`` is a list of two-string lists/tuples, or one such pair (then one score comes
        back, as CrossEncoder does). ``activation`` overrides the model's (``"none"``: logits).

        Raises:
            InputError: an empty list, an item that is not two strings, a bad batch size or
                activation.
        """
        items, single = as_pairs(pairs)
        chosen = self.activation_for(activation)
        scores = _activated(self.pair_logits(items, batch_size), chosen)
        return scores[0] if single else scores

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        activation: str | None = None,
    ) -> list[dict[str, Any]]:
        """``documents`` sorted by their score for ``query``, as ``CrossEncoder.rank``.

        Each entry is ``{"corpus_id": index in documents, "score": float}``, plus ``"text"``
        with ``return_documents``; the best ``top_k`` (``None``: all). Equal scores keep the
        documents' order, as Python's sort does for CrossEncoder.

        Raises:
            InputError: an empty or non-string query, an empty documents list or a
                non-string document, ``top_k`` not a positive integer, a bad activation.
        """
        check_top_k(top_k)
        pairs = query_pairs(query, documents)
        chosen = self.activation_for(activation)
        scores = _activated(self.pair_logits(pairs, batch_size), chosen)
        return ranked(scores, documents if return_documents else None, top_k)

    def reference_figures(self, stored: Mapping[str, np.ndarray]) -> VariantFigures:
        """Figures against the PyTorch logits stored in ``references.npz``: every stored query
        with every stored document, batched per query as ``rank`` runs them."""
        queries = [str(query) for query in stored["queries"]]
        documents = [str(document) for document in stored["documents"]]
        return ranking_figures(stored["logits"], self.query_logits(queries, documents),
                               self.scores, queries)

    def query_logits(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Logits ``[queries, documents]``, each query's documents in one batch."""
        return np.stack([
            self.pair_logits([(query, document) for document in documents], len(documents))
            for query in queries
        ])


def _first_logits(batches: Iterable[tuple[list[int], Any, np.ndarray]], count: int) -> np.ndarray:
    """The one logit of each pair, in input order, from the batches of a run."""
    result = np.empty(count, dtype=np.float32)
    for chunk, _, logits in batches:
        result[chunk] = logits[:, 0]
    return result


def _activated(logits: np.ndarray, activation: str) -> np.ndarray:
    return sigmoid(logits) if activation == "sigmoid" else logits


def ranked(
    scores: np.ndarray, documents: Sequence[str] | None, top_k: int | None
) -> list[dict[str, Any]]:
    """``{"corpus_id", "score"[, "text"]}`` of each score, best first, the ``top_k`` best."""
    results: list[dict[str, Any]] = [
        {"corpus_id": index, "score": float(score)} for index, score in enumerate(scores)
    ]
    if documents is not None:
        for result, document in zip(results, documents):
            result["text"] = document
    return sorted(results, key=lambda result: result["score"], reverse=True)[:top_k]


def query_pairs(query: object, documents: object) -> list[Pair]:
    """``(query, document)`` for each document, after checking both.

    Raises:
        InputError: the query is not a non-empty string, the documents not a non-empty list of
            strings.
    """
    if not isinstance(query, str) or not query:
        raise InputError(
            f"query must be a non-empty string, got {type(query).__name__} ({query!r:.40})."
        )
    if not isinstance(documents, (list, tuple)) or not documents:
        raise InputError(
            f"documents must be a non-empty list of strings, got {documents!r:.60}. Pass at "
            "least one document."
        )
    query = checked_unicode(query, "query")
    pairs = []
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise InputError(
                f"document #{index} is {type(document).__name__} ({document!r:.40}), not a "
                "string. Pass the documents as strings."
            )
        pairs.append((query, checked_unicode(document, f"document #{index}")))
    return pairs


def as_pairs(pairs: object) -> tuple[list[Pair], bool]:
    """A list of ``(query, document)`` tuples, and whether one pair (not a list) was given.

    Raises:
        InputError: not a pair or a non-empty list of pairs of two strings.
    """
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise InputError(
            f"pairs must be a non-empty list of [query, document] pairs, got {pairs!r:.60}."
        )
    single = isinstance(pairs[0], str)  # CrossEncoder's test: a flat pair is one input
    items = [pairs] if single else list(pairs)
    checked = []
    for index, item in enumerate(items):
        if not (isinstance(item, (list, tuple)) and len(item) == 2
                and all(isinstance(text, str) for text in item)):
            raise InputError(
                f"pair #{index} is {item!r:.60}; a pair is [query, document], two strings."
            )
        checked.append((checked_unicode(item[0], f"pair #{index} query"),
                        checked_unicode(item[1], f"pair #{index} document")))
    return checked, single


def ranking_figures(
    reference: np.ndarray,
    candidate: np.ndarray,
    activate: Callable[[np.ndarray], np.ndarray],
    queries: Sequence[str],
) -> VariantFigures:
    """Gate figures of a variant's ``[queries, documents]`` logits against the reference's.

    One prediction per query: its score row (|Δ| of logits and of activated scores) and its
    top document, which agrees unless the reference preferred its own beyond a float tie; a
    changed top document is a flip with the reference's margin for it. ``retrieval_agreement``
    is the mean top-10 overlap. Scores that each move by at most b keep the order of any two
    documents more than 2b apart, so the score bound is the rank-order gate
    (``VariantGate.violations`` fails a flip beyond 2b).
    """
    reference64 = np.asarray(reference, dtype=np.float64)
    candidate64 = np.asarray(candidate, dtype=np.float64)
    finite = bool(np.isfinite(candidate64).all())
    reference_scores = activate(reference64)
    candidate_scores = activate(np.nan_to_num(candidate64))
    rows: list[tuple[float, float, tuple[float, float] | None, str]] = []
    for index, query in enumerate(queries):
        label = f"query[{index}] {query[:32]!r}"
        if not np.isfinite(candidate64[index]).all():
            rows.append((float("inf"), float("inf"), (float("inf"), float("inf")), label))
            continue
        chosen = int(np.argmax(candidate64[index]))
        margin = float(reference64[index].max() - reference64[index, chosen])
        gap = float(reference_scores[index].max() - reference_scores[index, chosen])
        prob_diff = float(np.max(np.abs(reference_scores[index] - candidate_scores[index])))
        abs_diff = float(np.max(np.abs(reference64[index] - candidate64[index])))
        rows.append((prob_diff, abs_diff, (margin, gap) if margin > TIE_TOLERANCE else None, label))
    figures = figures_from_rows(rows)
    overlap = top_k_overlap(reference_scores, candidate_scores, RETRIEVAL_DEPTH)
    return replace(figures, finite=finite, retrieval_agreement=overlap)
