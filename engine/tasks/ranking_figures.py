"""Gate figures of a reranker variant, torch-free: rank order and scores per query.

The optimizer measures them against live PyTorch (``export.tasks.reranking``) and ``verify`` /
``auto`` against the logits stored in ``references.npz`` (``engine.reference_figures``), so a
variant is held to the same figures wherever it runs. Kept apart from ``Reranker`` so the
figure table can import it without the engine classes (they import the variant machinery).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from engine.gate_figures import TIE_TOLERANCE, figures_from_rows, top_k_overlap
from engine.variant_records import VariantFigures

RETRIEVAL_DEPTH = 10


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


def stored_ranking_figures(reranker: Any, stored: Any) -> VariantFigures:
    """Figures of ``reranker`` against the PyTorch logits stored in ``references.npz``: every
    stored query with every stored document, batched per query as ``rank`` runs them."""
    queries = [str(query) for query in stored["queries"]]
    documents = [str(document) for document in stored["documents"]]
    ours = np.stack([
        reranker.pair_logits([(query, document) for document in documents], len(documents))
        for query in queries
    ])
    return ranking_figures(stored["logits"], ours, reranker.scores, queries)
