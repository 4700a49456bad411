"""Serving a token classifier (NER): HF ``token_classification`` lists, V2 JSON rows.

The engine call runs only the per-token logits, one result per text; the pipeline's
post-processing (aggregation strategy, ignored labels) is per request, when the job is
answered, so every NER request can share every batch. ``huggingface_hub.InferenceClient
.token_classification`` posts ``{"inputs": text, "parameters": {"aggregation_strategy",
"ignore_labels", "stride"}}`` and reads a list of ``{"entity_group" | "entity", "score", "word",
"start", "end"}``. Without ``aggregation_strategy`` the server groups entities (``simple``), as
the Inference API answers; ``transformers.pipeline`` itself defaults to ``none``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.checks import check_flag
from engine.tasks.token_classification import (
    TASK_TOKEN_CLASSIFICATION,
    TokenClassifier,
    TokenLogits,
    check_ignore_labels,
    check_strategy,
)
from engine.tokenization import EncodedRow, as_text_list
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

# Scores of a served batch vs one in-process call (float noise of padding and batching).
SCORE_ATOL = 1e-4
_OPTIONS = ("aggregation_strategy", "ignore_labels", "stride", "truncation")
DEFAULT_STRATEGY = "simple"


@dataclass(frozen=True)
class NerOptions:
    """A request's post-processing, checked; ``truncation``: cut texts over the input bound
    instead of refusing them (413)."""

    strategy: str
    ignore_labels: tuple[str, ...]
    truncation: bool = False


class TokenClassificationHandler(TaskHandler):
    task = TASK_TOKEN_CLASSIFICATION
    model: TokenClassifier
    v2_inputs = (TensorSpec("text", "BYTES", (-1,)),)
    # One JSON array of the text's entities per row (the pipeline's dicts): their count varies
    # from text to text, which no fixed-shape tensor holds.
    v2_outputs = (TensorSpec("entities", "BYTES", (-1,)),)

    def parse_v2(self, inputs: dict[str, list[str]], parameters: dict[str, Any]) -> Job:
        texts = required_v2_input(inputs, "text", ("text",))
        self.check_texts(texts)
        return Job(list(texts), options=self._options(parameters))

    def parse_hf(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        if route != "task":
            raise unsupported_route(self.task, route)
        items, single = hf_texts(inputs)
        texts, _ = as_text_list(items, what="input")
        self.check_texts(texts)
        return Job(texts, options=self._options(parameters), single=single)

    def _options(self, parameters: dict[str, Any]) -> NerOptions:
        unknown = sorted(set(parameters) - set(_OPTIONS))
        if unknown:
            raise ValidationError(
                f"Unknown parameter(s) {unknown}; token classification takes "
                f"{', '.join(_OPTIONS)}."
            )
        if parameters.get("stride") is not None:
            raise ValidationError(
                '"stride" (splitting long texts into overlapping windows) is not supported; '
                'leave it out, and send "truncation": true to cut a long text at the bound.'
            )
        strategy = parameters.get("aggregation_strategy")
        truncation = parameters.get("truncation")
        return NerOptions(
            check_strategy(DEFAULT_STRATEGY if strategy is None else strategy),
            check_ignore_labels(parameters.get("ignore_labels")),
            False if truncation is None else check_flag("truncation", truncation),
        )

    def truncates(self, job: Job) -> bool:
        return job.options.truncation

    def run_batch(self, key: Hashable, rows: list[EncodedRow]) -> Sequence[TokenLogits]:
        return self.model.token_logits_encoded(rows, batch_size=len(rows))

    def answer_values(self, job: Job) -> int:
        # Post-processing walks every token of every text: an upper bound, so that long texts'
        # answers are built off the event loop.
        return len(job.texts) * self.max_input_tokens

    def _entities(self, job: Job, results: list[TokenLogits]) -> list[list[dict[str, Any]]]:
        options: NerOptions = job.options
        return [self.model.entities(tokens, options.strategy, options.ignore_labels)
                for tokens in results]

    def encode_v2(self, job: Job, results: list[TokenLogits]) -> list[OutputTensor]:
        rows = [json.dumps(entities, ensure_ascii=False).encode()
                for entities in self._entities(job, results)]
        return [OutputTensor("entities", "BYTES", np.array([*rows, b""], dtype=object)[:-1])]

    def encode_hf(self, job: Job, results: list[TokenLogits], route: str) -> Any:
        entities = self._entities(job, results)
        return entities[0] if job.single else entities


class TokenClassificationAnswers(TaskAnswers):
    """The entities the server groups by default (``simple``): labels, words and offsets equal,
    scores within :data:`SCORE_ATOL`."""

    def expected(self, model: Any, text: str, parameters: dict[str, Any]) -> Any:
        return model(text, aggregation_strategy=DEFAULT_STRATEGY)

    def from_hf(self, body: Any) -> Any:
        return list(body)

    def from_v2(self, outputs: dict[str, list[Any]]) -> Any:
        return json.loads(outputs["entities"][0])

    def matches(self, answer: Any, want: Any) -> bool:
        return len(answer) == len(want) and all(
            {**ours, "score": 0.0} == {**theirs, "score": 0.0}
            and abs(float(ours["score"]) - float(theirs["score"])) <= SCORE_ATOL
            for ours, theirs in zip(answer, want)
        )
