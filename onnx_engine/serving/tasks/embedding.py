"""Serving a sentence-embedding model: V2 ``text`` -> ``embedding`` FP32 [N, D], the Hugging Face
feature-extraction shape, and (through ``embedding_routes``) TEI ``/embed`` and OpenAI
``/v1/embeddings``.

The engine call pools but does not normalize, one row per text, so requests that want normalized
and raw vectors share every batch; each job normalizes its own rows when it is answered. The
tokens the model saw for each text (its encoded row's, ``JobResult.tokens``) are what OpenAI
answers bill as usage.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from engine.manifest import TASK_FEATURE_EXTRACTION
from engine.pooling import l2_normalize
from engine.similarity import similarity_matrix
from engine.tasks.feature_extraction import Embedder
from engine.tokenization import EncodedRow, as_text_list
from onnx_engine.embedding_protocols import EmbeddingRequest, decode_base64
from onnx_engine.serving.errors import ValidationError
from onnx_engine.serving.tasks.answers import TaskAnswers, Wire
from onnx_engine.serving.tasks.base import (
    Job,
    OutputTensor,
    TaskHandler,
    TensorSpec,
    hf_texts,
    required_v2_input,
    unsupported_route,
)

_OPTIONS = ("normalize", "truncate")
# An embedding must point where the in-process one does. 0.99 is the bound the lossy variants'
# gate holds every input to, so a server running another precision (int8, PyTorch bf16) passes;
# a vector answered for another text fails: the closest two of the 305 bundled sentences (one
# word apart) have cosine 0.964 with all-MiniLM-L6-v2.
MIN_COSINE = 0.99


@dataclass(frozen=True)
class EmbedOptions:
    """``normalize``: L2-normalize this job's rows (resolved: the model's default when unset);
    ``truncate``: cut texts over the input bound instead of refusing them (413)."""

    normalize: bool
    truncate: bool = False
    openai: bool = False


class EmbeddingHandler(TaskHandler):
    task = TASK_FEATURE_EXTRACTION
    model: Embedder
    v2_inputs = (TensorSpec("text", "BYTES", (-1,)),)
    v2_outputs = (TensorSpec("embedding", "FP32", (-1, -1)),)
    truncate_parameter = "truncate"  # TEI's and the HF feature-extraction spec's name

    def parse_v2(self, inputs: dict[str, list[str]], parameters: dict[str, Any]) -> Job:
        texts = required_v2_input(inputs, "text", ("text",))
        return self.job(EmbeddingRequest(list(texts), **self._options(parameters)))

    def parse_hf(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        if route != "task":
            raise unsupported_route(self.task, route)
        items, single = hf_texts(inputs)
        texts, _ = as_text_list(items)
        job = self.job(EmbeddingRequest(texts, **self._options(parameters)))
        return replace(job, single=single)

    def job(self, request: EmbeddingRequest, openai: bool = False) -> Job:
        """The job of a parsed request, after the server's limits; ``openai``: the request came
        from /v1/embeddings, whose clients cannot ask to truncate (413 advice differs).

        Raises:
            ValidationError: too many texts, or a text over ``max_input_chars``.
        """
        self.check_texts(request.texts)
        normalize = self.model.pooling.normalize if request.normalize is None else request.normalize
        return Job(list(request.texts), options=EmbedOptions(normalize, request.truncate, openai))

    def truncates(self, job: Job) -> bool:
        return job.options.truncate

    def truncate_fix(self, job: Job) -> str:
        if job.options.openai:  # OpenAI's API refuses over-long input too; it has no flag
            return ('Shorten it: /v1/embeddings has no truncation flag (as OpenAI\'s API); '
                    '/embed cuts it with "truncate": true.')
        return ('Send "truncate": true (on /embed beside "inputs", elsewhere in the parameters) '
                "to cut it there, or shorten it.")

    def _options(self, parameters: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(parameters) - set(_OPTIONS))
        if unknown:
            raise ValidationError(
                f"Unknown parameter(s) {unknown}; feature extraction takes {', '.join(_OPTIONS)}."
            )
        options = {}
        for name in _OPTIONS:
            value = parameters.get(name)
            if value is not None and not isinstance(value, bool):
                raise ValidationError(f'"{name}" must be true or false, got {value!r}.')
            if value is not None:
                options[name] = value
        return options

    def run_batch(self, key: Hashable, rows: list[EncodedRow]) -> Sequence[np.ndarray]:
        """Each row's pooled, unnormalized vector."""
        return list(self.model.embed_encoded(rows, batch_size=len(rows), normalize=False))

    def answer_values(self, job: Job) -> int:
        return len(job.texts) * self.model.dimension

    def vectors(self, job: Job, results: list[np.ndarray]) -> np.ndarray:
        """The job's rows as float32 [N, D], normalized as the job asked."""
        vectors = np.stack(results).astype(np.float32)
        return l2_normalize(vectors) if job.options.normalize else vectors

    def encode_v2(self, job: Job, results: list[np.ndarray]) -> list[OutputTensor]:
        return [OutputTensor("embedding", "FP32", self.vectors(job, results))]

    def encode_hf(self, job: Job, results: list[np.ndarray], route: str) -> Any:
        vectors = self.vectors(job, results).tolist()
        return vectors[0] if job.single else vectors


def _openai_answer(body: Any) -> np.ndarray:
    (item,) = body["data"]
    return decode_base64(item["embedding"])


class EmbeddingAnswers(TaskAnswers):
    """The vector ``float32 [D]``; it matches at cosine :data:`MIN_COSINE` or more.

    ``openai`` is the OpenAI embeddings API, asked as the ``openai`` Python client asks by
    default: base64 little-endian float32.
    """

    protocols: ClassVar[Mapping[str, Wire]] = {"openai": Wire(
        "embeddings", "/v1/embeddings",
        lambda model, text: {"model": model, "input": text, "encoding_format": "base64"},
        _openai_answer,
    )}

    def expected(self, model: Any, text: str, parameters: dict[str, Any]) -> Any:
        return model.embed(text)[0]

    def from_hf(self, body: Any) -> Any:
        return np.asarray(body, dtype=np.float32)

    def from_v2(self, outputs: dict[str, list[Any]]) -> Any:
        return np.asarray(outputs["embedding"], dtype=np.float32)

    def matches(self, answer: Any, want: Any) -> bool:
        return answer.shape == want.shape and bool(
            similarity_matrix(answer[None], want[None])[0, 0] >= MIN_COSINE)  # NaN fails
