"""The ways of labelling the tokens of a batch of texts that the benchmark compares.

The end-to-end contenders (engine, pipeline) answer every token (``aggregation_strategy="none"``,
no ignored label): the pipeline's full post-processing per token, and an answer that names each
token's label. ``predictions`` are those labels ``[rows, tokens]`` by token position, -1 at
special and padded positions, so every contender's rows line up with PyTorch's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from onnx_engine.bench.contenders.base import (
    Contender,
    PipelineContender,
    TorchModelContender,
    pad_rows,
)
from onnx_engine.bench.contenders.classification import OrtRawClassifier

# Every token, none left out: the answer names each token's label.
_EVERY_TOKEN = {"aggregation_strategy": "none", "ignore_labels": []}


class EngineTokenClassifier(Contender):
    """Ours, end to end: strings in, pipeline-shaped entity lists out."""

    name = "engine"

    def load(self) -> None:
        from engine.options import RuntimeOptions
        from engine.tasks.token_classification import TokenClassifier
        from onnx_engine.bench.variants import load_engine

        self.model = load_engine(TokenClassifier, RuntimeOptions(), self.settings)
        self._label_ids = {label: index for index, label in self.model.id2label.items()}

    def run(self) -> Any:
        return self.model(self.texts, batch_size=len(self.texts), **_EVERY_TOKEN)

    def predictions(self, output: Any) -> np.ndarray:
        return token_labels(output, self._label_ids)


class OrtRawTokenClassifier(OrtRawClassifier):
    """A bare ``InferenceSession.run`` on pre-tokenized inputs (logits out, no post-processing)."""

    def prepare(self, texts: Sequence[str]) -> None:
        super().prepare(texts)
        encoded = self._tokenizer.encode(list(texts))
        self._special = ~encoded.attention_mask.astype(bool)  # padding
        for index, row in enumerate(encoded.rows):
            self._special[index, : row.tokens] = row.encoding.special_tokens_mask

    def predictions(self, output: Any) -> np.ndarray:
        return np.where(self._special, -1, np.argmax(output[0], axis=-1))


class PyTorchTokenClassifier(TorchModelContender):
    """The PyTorch model's forward on pre-tokenized inputs."""

    auto_class = "AutoModelForTokenClassification"

    def prepare(self, texts: Sequence[str]) -> None:
        self._batch = self._tokenizer(list(texts), padding=True, truncation=True,
                                      return_tensors="pt", return_special_tokens_mask=True)
        special = self._batch.pop("special_tokens_mask").bool()
        self._special = (special | (self._batch["attention_mask"] == 0)).numpy()

    def run(self) -> Any:
        with self._torch.inference_mode():
            return self.model(**self._batch).logits

    def predictions(self, output: Any) -> np.ndarray:
        return np.where(self._special, -1, output.argmax(-1).numpy())


class PipelineTokenClassifier(PipelineContender):
    """``transformers.pipeline("token-classification")`` end to end, as most users run it."""

    pipeline_task = "token-classification"

    def load(self) -> None:
        super().load()
        self._label_ids = {label: int(i) for i, label in self.pipe.model.config.id2label.items()}

    def run(self) -> Any:
        return self.pipe(self.texts, batch_size=len(self.texts), **_EVERY_TOKEN)

    def predictions(self, output: Any) -> np.ndarray:
        return token_labels(output, self._label_ids)


def token_labels(results: Sequence[Sequence[dict[str, Any]]], label_ids: dict[str, int]
                 ) -> np.ndarray:
    """``[rows, tokens]`` label ids by token ``index`` of per-token answers, -1 elsewhere (the
    special tokens the answers leave out, and padding)."""
    rows = []
    for entities in results:
        row = [-1] * (max((entity["index"] for entity in entities), default=-1) + 2)
        for entity in entities:
            row[entity["index"]] = label_ids[entity["entity"]]
        rows.append(row)
    return pad_rows(rows)


TOKEN_CLASSIFICATION_CONTENDERS: tuple[type[Contender], ...] = (
    EngineTokenClassifier, OrtRawTokenClassifier, PyTorchTokenClassifier,
    PipelineTokenClassifier,
)
