"""Serving a text classifier: V2 ``text`` -> label/score/logits/probabilities, HF label lists.

The engine call runs only the logits, one row per text; activation and ranking are per request
(``function_to_apply``, ``top_k``), so every classification request can share every batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine.checks import check_flag
from engine.manifest import TASK_CLASSIFICATION
from engine.tasks.classification import Classifier, check_top_k
from engine.tokenization import EncodedRow, as_text_list
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import ValidationError
from onnx_engine.serving.tasks.answers import TaskAnswers
from onnx_engine.serving.tasks.base import (
    Job,
    OutputTensor,
    TaskHandler,
    TensorSpec,
    hf_texts,
    required_v2_input,
    unsupported_route,
)

# Scores may differ in the last bits when a text is batched with others (other padding, other
# summation order) or computed by another runtime (the PyTorch contender): 1e-4 absolute is far
# above that noise (~1e-6) and far below any real mix-up between texts.
SCORE_ATOL = 1e-4
# truncation as transformers' pipelines take it: cut texts over the bound instead of a 413.
_OPTIONS = ("top_k", "function_to_apply", "truncation")


@dataclass(frozen=True)
class ClassifyOptions:
    """``top_k``: ``None`` for the best label only (V2) or all labels (HF); activation resolved;
    ``truncation``: cut texts over the input bound instead of refusing them."""

    top_k: int | None
    activation: str
    truncation: bool = False


class ClassificationHandler(TaskHandler):
    task = TASK_CLASSIFICATION
    model: Classifier
    v2_inputs = (
        TensorSpec("text", "BYTES", (-1,)),
        TensorSpec("text_pair", "BYTES", (-1,), optional=True),
    )
    v2_outputs = (
        TensorSpec("label", "BYTES", (-1,)),
        TensorSpec("score", "FP32", (-1,)),
        TensorSpec("logits", "FP32", (-1, -1)),
        TensorSpec("probabilities", "FP32", (-1, -1)),
    )

    def __init__(self, model: Classifier, config: ServeConfig) -> None:
        super().__init__(model, config)
        # The labels in class order, built once (``Classifier.labels`` sorts them per call).
        self._labels = np.array(model.labels, dtype=object)

    def parse_v2(self, inputs: dict[str, list[str]], parameters: dict[str, Any]) -> Job:
        texts = required_v2_input(inputs, "text", ("text", "text_pair"))
        if "text_pair" in inputs:
            pairs = required_v2_input(inputs, "text_pair", ("text", "text_pair"))
            if len(pairs) != len(texts):
                raise ValidationError(
                    f"text_pair has {len(pairs)} strings but text has {len(texts)}; send one pair "
                    "per text."
                )
            texts = list(zip(texts, pairs))
        self.check_texts(texts)
        return Job(list(texts), options=self._options(parameters))

    def parse_hf(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        if route != "task":
            raise unsupported_route(self.task, route)
        items, single = hf_texts(inputs)
        texts, _ = as_text_list(items, allow_pairs=True)
        self.check_texts(texts)
        options = self._options(parameters)
        if options.top_k is None:  # the Inference API answers every label, best first
            options = replace(options, top_k=len(self._labels))
        return Job(texts, options=options, single=single)

    def _options(self, parameters: dict[str, Any]) -> ClassifyOptions:
        unknown = sorted(set(parameters) - set(_OPTIONS))
        if unknown:
            raise ValidationError(
                f"Unknown parameter(s) {unknown}; text classification takes {', '.join(_OPTIONS)}."
            )
        top_k = parameters.get("top_k")
        check_top_k(top_k)
        truncation = parameters.get("truncation")
        return ClassifyOptions(
            top_k, self.model.activation_for(parameters.get("function_to_apply")),
            False if truncation is None else check_flag("truncation", truncation),
        )

    def truncates(self, job: Job) -> bool:
        return job.options.truncation

    def run_batch(self, key: Hashable, rows: list[EncodedRow]) -> Sequence[np.ndarray]:
        return list(self.model.logits_encoded(rows, batch_size=len(rows)))

    def answer_values(self, job: Job) -> int:
        return len(job.texts) * len(self._labels) * 2  # label + score (V2: logits, probs)

    def encode_v2(self, job: Job, results: list[np.ndarray]) -> list[OutputTensor]:
        logits = np.stack(results).astype(np.float32)
        probabilities = self.model.scores(logits, job.options.activation).astype(np.float32)
        top_k = job.options.top_k
        labels = self._labels
        if top_k is None:
            best = probabilities.argmax(axis=1)
            label = labels[best]
            score = probabilities[np.arange(len(best)), best]
        else:  # [N, top_k], best first; stable so ties keep label order, as the pipeline does
            order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
            label = labels[order]
            score = np.take_along_axis(probabilities, order, axis=1)
        return [
            OutputTensor("label", "BYTES", np.vectorize(str.encode, otypes=[object])(label)),
            OutputTensor("score", "FP32", score.astype(np.float32)),
            OutputTensor("logits", "FP32", logits),
            OutputTensor("probabilities", "FP32", probabilities),
        ]

    def encode_hf(self, job: Job, results: list[np.ndarray], route: str) -> Any:
        scores = self.model.scores(np.stack(results), job.options.activation)
        return [self.model.ranked(row, job.options.top_k) for row in scores]


class ClassificationAnswers(TaskAnswers):
    """The best ``(label, score)``; scores equal within :data:`SCORE_ATOL`."""

    def expected(self, model: Any, text: str, parameters: dict[str, Any]) -> Any:
        (best,) = model(text, function_to_apply=parameters.get("function_to_apply"))
        return best["label"], best["score"]

    def from_hf(self, body: Any) -> Any:
        best = max(body[0], key=lambda item: item["score"])
        return best["label"], float(best["score"])

    def from_v2(self, outputs: dict[str, list[Any]]) -> Any:
        return outputs["label"][0], float(outputs["score"][0])

    def matches(self, answer: Any, want: Any) -> bool:
        return bool(answer[0] == want[0] and abs(answer[1] - want[1]) <= SCORE_ATOL)
