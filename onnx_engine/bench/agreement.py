"""Do two contenders predict the same thing? Top-1 labels for classifiers, generated tokens for
seq2seq, compared on the export check set (empty, short, non-ASCII, long and truncated texts).

An optimized variant is only worth its speed if it keeps the predictions; random-weight models
make this a strict test for classifiers, but random T5 logits have near-ties, so int8 token flips
there are expected and real checkpoints should be judged separately (see ONNX-FACTS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.manifest import TASK_TEXT2TEXT
from onnx_engine.bench.contenders.base import Contender


@dataclass(frozen=True)
class Agreement:
    """Share of predictions (labels or token positions) and of whole rows that agree; for
    embeddings, ``agreement`` is the lowest cosine between the two vectors of a text and
    ``rows_identical`` the share of texts whose vectors are equal within 1e-5."""

    candidate: str
    reference: str
    texts: int
    agreement: float
    rows_identical: float
    measure: str = "top-1"


def check_texts_for(task: str, max_length: int) -> list[str]:
    """The export check set; seq2seq drops the empty text, which generation rejects."""
    from export.check_set import check_texts

    return check_texts(max_length, include_empty=task != TASK_TEXT2TEXT)


def compare(candidate: Contender, reference: Contender, texts: Sequence[str],
            candidate_label: str, reference_label: str) -> Agreement:
    """Run both contenders on ``texts`` as one batch and compare their predictions."""
    if candidate.predictions_are_vectors:
        return _compare_vectors(candidate, reference, texts, candidate_label, reference_label)
    ours, theirs = _predict(candidate, texts), _predict(reference, texts)
    width = max(ours.shape[1], theirs.shape[1])
    ours, theirs = _widen(ours, width), _widen(theirs, width)
    counted = (ours != -1) | (theirs != -1)
    equal = (ours == theirs) & counted
    return Agreement(
        candidate_label, reference_label, len(texts),
        float(equal.sum() / max(1, counted.sum())),
        float(np.mean(np.all(equal == counted, axis=1))),
    )


def _compare_vectors(candidate: Contender, reference: Contender, texts: Sequence[str],
                     candidate_label: str, reference_label: str) -> Agreement:
    ours, theirs = (_vectors(contender, texts) for contender in (candidate, reference))
    cosines = (ours * theirs).sum(1) / np.maximum(
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1), 1e-300)
    same = np.all(np.abs(ours - theirs) <= 1e-5, axis=1)
    return Agreement(candidate_label, reference_label, len(texts), float(cosines.min()),
                     float(same.mean()), measure="min cosine")


def _vectors(contender: Contender, texts: Sequence[str]) -> np.ndarray:
    contender.prepare(texts)
    return np.asarray(contender.predictions(contender.run()), dtype=np.float64)


def _predict(contender: Contender, texts: Sequence[str]) -> np.ndarray:
    contender.prepare(texts)
    predictions = np.asarray(contender.predictions(contender.run()), dtype=np.int64)
    return predictions.reshape(len(texts), -1)


def _widen(ids: np.ndarray, width: int) -> np.ndarray:
    return np.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=-1)
