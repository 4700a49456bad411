"""The figures a variant's gate judges, computed from paired outputs: torch-free.

``onnx-engine optimize`` measures a variant against live PyTorch outputs and ``onnx-engine
verify`` against the PyTorch outputs stored in the artifact (``references.npz``); both turn the
pairs into ``VariantFigures`` here, and both judge them with ``VariantGate.violations``, so a
variant is held to the same figures wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import InputError
from engine.similarity import similarity_matrix
from engine.variants.records import Flip, VariantFigures

# One checked prediction: (|Δscore|, |Δ|, flip margins (logit, score) or None, label).
FigureRow = tuple[float, float, tuple[float, float] | None, str]

# Differences below this are float32 noise between two fp32 runtimes (~1e-6 measured): where the
# reference's own top two are this close, either label is the same prediction.
TIE_TOLERANCE = 1e-5
RETRIEVAL_DEPTH = 10
# Reference similarity differences below this are float32 noise: either document is the answer.
SCORE_TIE = 1e-5


@dataclass(frozen=True)
class OutputPair:
    """One checked input with the reference's and the candidate's output for it."""

    name: str
    text: str
    reference: np.ndarray
    candidate: np.ndarray


def argmax_agrees(reference: np.ndarray, candidate: np.ndarray, atol: float) -> bool:
    """True where the candidate's argmax is the reference's, or ties with it within ``atol``."""
    chosen = np.argmax(candidate, axis=-1)
    best = np.max(reference, axis=-1)
    at_chosen = np.take_along_axis(reference, chosen[..., None], axis=-1)[..., 0]
    return bool(np.all(best - at_chosen <= atol))


def measure_figures(
    pairs: Sequence[OutputPair],
    activate: Callable[[np.ndarray], np.ndarray],
    multi_label: bool = False,
) -> VariantFigures:
    """Worst |Δ| of raw outputs and of scores, the share of inputs whose prediction agrees, and
    every changed prediction with the reference's margin for it.

    ``activate`` turns raw outputs into scores (the model's softmax or sigmoid). A single-label
    prediction is the argmax; a multi-label one is the set of labels scored above 0.5, so it
    agrees when every label is on the same side of the threshold (or within the tie tolerance).
    Where a prediction changed, the reference's margin for it (top-1 minus the candidate's
    choice; for multi-label the largest |logit| on the wrong side) says how clear a flip it was,
    in logits and in scores.

    Raises:
        InputError: ``pairs`` is empty.
    """
    rows: list[FigureRow] = []  # (|Δprob|, |Δ|, flip margins (logit, score) or None, label)
    for pair in pairs:
        reference = np.asarray(pair.reference, dtype=np.float64)
        candidate = np.asarray(pair.candidate, dtype=np.float64)
        label = f"{pair.name} {pair.text[:32]!r}"
        if reference.shape != candidate.shape or not np.isfinite(candidate).all():
            # non-finite (or mis-shaped) is infinitely off and a clear flip
            rows.append((float("inf"), float("inf"), (float("inf"), float("inf")), label))
            continue
        reference_scores = activate(reference)
        prob_diff = float(np.max(np.abs(reference_scores - activate(candidate))))
        abs_diff = float(np.max(np.abs(reference - candidate)))
        margins = _flip_margins(reference, reference_scores, candidate, multi_label)
        rows.append((prob_diff, abs_diff, margins, label))
    return figures_from_rows(rows)


def figures_from_rows(rows: Sequence[FigureRow]) -> VariantFigures:
    """``VariantFigures`` of per-prediction rows ``(|Δscore|, |Δ|, flip margins or None, label)``.

    Raises:
        InputError: ``rows`` is empty.
    """
    if not rows:
        raise InputError("No outputs to measure: the check set is empty.")
    flipped = [(row, row[2]) for row in rows if row[2] is not None]
    # The clearest flip first, then the largest score difference.
    worst = max(rows, key=lambda row: (row[2] is not None, row[2] or (0.0, 0.0), row[0], row[1]))
    flips = sorted(
        (Flip(row[3], margins[1], row[0]) for row, margins in flipped),
        key=lambda flip: (-flip.reference_gap, -flip.prob_diff),
    )
    return VariantFigures(
        max_abs_diff=max(row[1] for row in rows),
        max_prob_diff=max(row[0] for row in rows),
        agreement=1.0 - len(flipped) / len(rows),
        inputs=len(rows),
        finite=all(row[0] != float("inf") for row in rows),
        worst_input=worst[3],
        clearest_flip=max((margins[0] for _, margins in flipped), default=0.0),
        clearest_flip_gap=max((flip.reference_gap for flip in flips), default=0.0),
        flips=tuple(flips),
    )


def _flip_margins(
    reference: np.ndarray, reference_scores: np.ndarray, candidate: np.ndarray, multi_label: bool
) -> tuple[float, float] | None:
    """None when the candidate's prediction agrees; else how clearly the reference disagreed,
    as ``(logit margin, score gap)``."""
    if not multi_label:
        if argmax_agrees(reference, candidate, TIE_TOLERANCE):
            return None
        chosen = np.argmax(candidate, axis=-1)[..., None]

        def margin(values: np.ndarray) -> float:
            at_chosen = np.take_along_axis(values, chosen, axis=-1)[..., 0]
            return float(np.max(np.max(values, axis=-1) - at_chosen))

        return margin(reference), margin(reference_scores)
    wrong_side = ((reference > 0) != (candidate > 0)) & (np.abs(reference) > TIE_TOLERANCE)
    if not wrong_side.any():
        return None
    gaps = np.abs(2 * reference_scores[wrong_side] - 1)  # on-score minus off-score of a label
    return float(np.max(np.abs(reference[wrong_side]))), float(np.max(gaps))


def compare_embeddings(
    ours: np.ndarray,
    theirs: np.ndarray,
    texts: Sequence[str],
    similarity: str,
    documents: int,
    queries: int,
) -> VariantFigures:
    """Figures of embeddings ``ours`` vs ``theirs``: per-text cosine, then retrieval of the last
    ``queries`` rows over the ``documents`` rows before them."""
    ours64, theirs64 = ours.astype(np.float64), theirs.astype(np.float64)
    finite = bool(np.isfinite(ours64).all())
    norms = np.linalg.norm(ours64, axis=1) * np.linalg.norm(theirs64, axis=1)
    cosines = np.where(norms > 0, (ours64 * theirs64).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)
    if not finite:
        cosines = np.where(np.isfinite(cosines), cosines, -1.0)
    worst = int(np.argmin(cosines))
    document_rows = slice(len(texts) - queries - documents, len(texts) - queries)
    query_rows = slice(len(texts) - queries, len(texts))
    reference_scores = similarity_matrix(theirs[query_rows], theirs[document_rows], similarity)
    scores = similarity_matrix(np.nan_to_num(ours[query_rows]), np.nan_to_num(ours[document_rows]),
                               similarity)
    flips = _top1_flips(reference_scores, scores)
    return VariantFigures(
        max_abs_diff=float(np.max(np.abs(ours64 - theirs64))) if finite else float("inf"),
        max_prob_diff=float(np.max(np.abs(scores - reference_scores))),
        agreement=1.0 - len(flips) / queries,
        inputs=queries,
        finite=finite,
        worst_input=f"{texts[worst][:40]!r} (cosine {cosines[worst]:.5f})",
        clearest_flip=max(flips, default=0.0),
        min_cosine=float(cosines.min()),
        retrieval_agreement=top_k_overlap(reference_scores, scores, RETRIEVAL_DEPTH),
    )


def top_k_overlap(reference: np.ndarray, candidate: np.ndarray, k: int) -> float:
    """Mean share of each row's reference top ``k`` that is also in the candidate's top ``k``."""
    k = min(k, reference.shape[1])
    best = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    found = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(best, found)]))


def _top1_flips(reference: np.ndarray, candidate: np.ndarray) -> list[float]:
    """For each query whose top document changed (beyond a float tie), the reference's margin
    between its own top document and the candidate's."""
    chosen = np.argmax(candidate, axis=1)
    margins = reference.max(axis=1) - reference[np.arange(len(reference)), chosen]
    return [float(margin) for margin in margins if margin > SCORE_TIE]
