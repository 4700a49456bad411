"""Do two contenders predict the same thing? Top-1 labels for classifiers, generated tokens for
seq2seq, compared on the export check set (empty, short, non-ASCII, long and truncated texts).

An optimized variant is only worth its speed if it keeps the predictions; random-weight models
make this a strict test for classifiers, but random T5 logits have near-ties, so int8 token flips
there are expected and real checkpoints should be judged separately (see ONNX-FACTS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.manifest import TASK_TEXT2TEXT
from onnx_engine.bench.contenders.base import Contender


@dataclass(frozen=True)
class Agreement:
    """Share of predictions (labels or token positions) and of whole rows that agree."""

    candidate: str
    reference: str
    texts: int
    agreement: float
    rows_identical: float


def check_texts_for(task: str, max_length: int) -> list[str]:
    """The export check set; seq2seq drops the empty text, which generation rejects."""
    from export.check_set import check_texts

    return check_texts(max_length, include_empty=task != TASK_TEXT2TEXT)


def compare(candidate: Contender, reference: Contender, texts: Sequence[str],
            candidate_label: str, reference_label: str) -> Agreement:
    """Run both contenders on ``texts`` as one batch and compare their predictions."""
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


def _predict(contender: Contender, texts: Sequence[str]) -> np.ndarray:
    contender.prepare(texts)
    predictions = np.asarray(contender.predictions(contender.run()), dtype=np.int64)
    return predictions.reshape(len(texts), -1)


def _widen(ids: np.ndarray, width: int) -> np.ndarray:
    return np.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=-1)
