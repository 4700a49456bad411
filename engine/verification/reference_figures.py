"""A variant's gate figures against the PyTorch outputs stored in the artifact (torch-free).

The same figures ``onnx-engine optimize`` measures against live PyTorch
(``engine.verification.gate_figures``), on the inputs the artifact stores
(``engine.verification.references``):
- classifier: the check set at batch 1 and its short texts in one padded batch (optimize judges
  that batch too, and also the whole check set in one batch and its calibration texts, which
  the artifact does not carry);
- T5: PyTorch's greedy path through the KV cache, one prediction per step, judged on the stored
  top-k logits (optimize also compares the parity set's full logit rows);
- embeddings: cosine on every stored text and retrieval of the stored queries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT
from engine.variants.records import VariantFigures
from engine.verification.gate_figures import (
    TIE_TOLERANCE,
    OutputPair,
    compare_embeddings,
    figures_from_rows,
    measure_figures,
)
from engine.verification.references import logsumexp

Arrays = Mapping[str, np.ndarray]


def classifier_figures(classifier: Any, stored: Arrays) -> VariantFigures:
    """Logits of every text at batch 1 and of the short texts in one padded batch vs the stored
    PyTorch logits."""
    texts = [str(text) for text in stored["texts"]]
    pairs = [
        OutputPair(f"b1[{index}]", text, stored["logits"][index], classifier.logits([text])[0])
        for index, text in enumerate(texts)
    ]
    batch_texts = [str(text) for text in stored.get("batch_texts", stored["texts"])]
    batch = classifier.logits(batch_texts, batch_size=len(batch_texts))
    pairs += [
        OutputPair(f"batch{len(batch)}[{index}]", text, stored["batch_logits"][index], batch[index])
        for index, text in enumerate(batch_texts)
    ]
    return measure_figures(pairs, classifier.scores, multi_label=classifier.activation == "sigmoid")


def embedding_figures(embedder: Any, stored: Arrays) -> VariantFigures:
    """Cosine to the stored vectors on every text and the stored queries' retrieval."""
    texts = tuple(str(text) for text in stored["texts"])
    ours = embedder.embed(list(texts))
    return compare_embeddings(ours, stored["embeddings"], texts, embedder.pooling.similarity,
                              int(stored["documents"]), int(stored["queries"]))


def seq2seq_figures(lm: Any, stored: Arrays) -> VariantFigures:
    """Each step of PyTorch's greedy path, teacher-forced through the KV cache, vs the stored
    top-k logits of that step.

    Where the variant's choice is among the stored top k, its reference margin is exact; beyond
    them it is at least top-1 minus the k-th (the k-th bounds every logit not kept), so a flip
    is never judged milder than it was. |Δ| and |Δprob| are taken over the stored top k.
    """
    sources = [str(text) for text in stored["texts"]]
    ours = lm.decoder_logits(sources, stored["decoder_input_ids"], use_cache=True)
    rows, whole = [], []
    for row, (text, length) in enumerate(zip(sources, stored["lengths"])):
        agreed = True
        for step in range(int(length)):
            result = _step_row(ours[row, step], stored, row, step, f"greedy path[{row}] pos {step}",
                               text)
            agreed = agreed and result[2] is None and result[0] != float("inf")
            rows.append(result)
        whole.append(agreed)
    figures = figures_from_rows(rows)
    return replace(figures, sequence_agreement=sum(whole) / len(whole))


def _step_row(
    candidate: np.ndarray, stored: Arrays, row: int, step: int, name: str, text: str
) -> tuple[float, float, tuple[float, float] | None, str]:
    """``(|Δprob|, |Δ|, flip margins or None, label)`` of one decoder step."""
    label = f"{name} {text[:32]!r}"
    candidate = np.asarray(candidate, dtype=np.float64)
    if not np.isfinite(candidate).all():
        return float("inf"), float("inf"), (float("inf"), float("inf")), label
    ids = stored["topk_ids"][row, step].astype(np.int64)
    values = stored["topk_logits"][row, step].astype(np.float64)
    total = float(stored["logsumexp"][row, step])
    at_ids = candidate[ids]
    abs_diff = float(np.max(np.abs(at_ids - values)))
    probabilities = np.exp(at_ids - logsumexp(candidate))
    prob_diff = float(np.max(np.abs(probabilities - np.exp(values - total))))
    chosen = int(np.argmax(candidate))
    found = np.flatnonzero(ids == chosen)
    at_chosen = values[found[0]] if found.size else values[-1]
    margin = float(values[0] - at_chosen)
    if margin <= TIE_TOLERANCE:
        return prob_diff, abs_diff, None, label
    gap = float(np.exp(values[0] - total) - np.exp(at_chosen - total))
    return prob_diff, abs_diff, (margin, gap), label


TASK_FIGURES = {
    TASK_CLASSIFICATION: classifier_figures,
    TASK_TEXT2TEXT: seq2seq_figures,
    TASK_FEATURE_EXTRACTION: embedding_figures,
}
