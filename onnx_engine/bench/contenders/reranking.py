"""The ways of reranking a batch of documents that the benchmark compares.

The workload's texts are the documents, ranked against one fixed query: ``Reranker.rank``
(ours), a bare ``InferenceSession.run`` on the pre-tokenized pairs (the floor), and
sentence-transformers' ``CrossEncoder.rank`` on PyTorch fp32 (what its users run, the speed-up
baseline). Predictions are each document's position in the ranking, so agreement is the share
of documents ranked where the reference ranks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from onnx_engine.bench.contenders.base import Contender, torch_threads
from onnx_engine.bench.contenders.classification import OrtRawClassifier

QUERY = "Which of these texts answers the question best?"


def positions(ranking: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each document's position in a ``[{"corpus_id", ...}]`` ranking, in document order."""
    order = np.array([int(entry["corpus_id"]) for entry in ranking])
    return np.argsort(order, kind="stable")


class EngineReranker(Contender):
    """Ours, end to end: ``Reranker.rank(query, documents)``."""

    name = "engine"

    def load(self) -> None:
        from engine.options import RuntimeOptions
        from engine.tasks.reranking import Reranker
        from onnx_engine.bench.variants import load_engine

        self.model = load_engine(Reranker, RuntimeOptions(), self.settings)

    def run(self) -> Any:
        return self.model.rank(QUERY, self.texts, batch_size=len(self.texts))

    def predictions(self, output: Any) -> np.ndarray:
        return positions(output)


class OrtRawReranker(OrtRawClassifier):
    """A bare ``InferenceSession.run`` on the (query, document) pairs tokenized in ``prepare``."""

    def prepare(self, texts: Sequence[str]) -> None:
        feeds = self._tokenizer.encode([(QUERY, text) for text in texts]).feeds()
        self.feeds = {name: feeds[name] for name in self._input_names}

    def predictions(self, output: Any) -> np.ndarray:
        order = np.argsort(-output[0][:, 0], kind="stable")
        return np.argsort(order, kind="stable")


class CrossEncoderReranker(Contender):
    """``CrossEncoder(checkpoint).rank(query, documents)`` on PyTorch fp32."""

    name = "sentence-transformers"
    requires = ("torch", "sentence_transformers")
    needs_reference = True
    runs_variants = False

    def load(self) -> None:
        torch_threads(self.settings.threads)
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(self.settings.reference, device="cpu")

    def run(self) -> Any:
        return self.model.rank(QUERY, self.texts, batch_size=len(self.texts),
                               show_progress_bar=False)

    def predictions(self, output: Any) -> np.ndarray:
        return positions(output)


RERANKING_CONTENDERS: tuple[type[Contender], ...] = (
    EngineReranker, OrtRawReranker, CrossEncoderReranker,
)
