"""Similarity between embeddings and top-k search over a corpus, in NumPy.

The functions are sentence-transformers' (``SentenceTransformer.similarity`` and
``util.semantic_search``): cosine, dot product, and negated euclidean / manhattan distances, so
"higher is more similar" holds for every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.checks import check_int
from engine.errors import InputError
from engine.pooling import SIMILARITY_FUNCTIONS, l2_normalize


@dataclass(frozen=True)
class SearchHit:
    """One corpus entry found for a query: its index in the corpus and its similarity score."""

    corpus_id: int
    score: float


def similarity_matrix(a: np.ndarray, b: np.ndarray, function: str = "cosine") -> np.ndarray:
    """Scores ``[len(a), len(b)]`` between two sets of embeddings, in float32.

    Raises:
        InputError: the arrays are not 2-D with the same width, or ``function`` is unknown.
    """
    if function not in SIMILARITY_FUNCTIONS:
        raise InputError(
            f"Unknown similarity function {function!r}. "
            f"Choose one of: {', '.join(SIMILARITY_FUNCTIONS)}."
        )
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"Embeddings of different widths cannot be compared: {a.shape[1]} vs {b.shape[1]}."
        )
    if function == "cosine":
        return l2_normalize(a) @ l2_normalize(b).T
    if function == "dot":
        return a @ b.T
    if function == "euclidean":
        squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        return -np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)
    return -np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2).astype(np.float32)


def best_hits(scores: np.ndarray, k: int) -> list[list[SearchHit]]:
    """The ``k`` best columns of each row of ``scores``, best first; ties keep corpus order.

    Raises:
        InputError: ``k`` is not a positive integer.
    """
    k = check_int("top_k", k)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [
        [SearchHit(int(index), float(row[index])) for index in indices]
        for row, indices in zip(scores, order)
    ]


def _as_matrix(vectors: object, name: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(
            f"{name} must be embeddings [n, dim] with n >= 1, got shape {array.shape}."
        )
    return array
