"""Serving a cross-encoder reranker: each (query, document) pair is one row of a batch.

The engine call runs only the logits, one per pair, so pairs of every rerank request (TEI
``/rerank``, ``/v1/rerank``, V2) share batches; each job applies its own activation and sorts
its own documents when it is answered. The routes live in ``onnx_engine.serving.rerank_routes``.
:class:`RerankingAnswers` is how the load test asks and checks these models.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from engine.numerics import sigmoid
from engine.tasks.reranking import TASK_RANKING, Reranker, query_pairs, ranked
from engine.tokenization import EncodedRow
from onnx_engine.json_fields import flag
from onnx_engine.serving.errors import NotFoundError, ValidationError
from onnx_engine.serving.tasks.answers import TaskAnswers, Wire
from onnx_engine.serving.tasks.base import (
    Job,
    OutputTensor,
    TaskHandler,
    TensorSpec,
    required_v2_input,
)

_V2_PARAMETERS = ("raw_scores", "truncate")
# The query every load-test text (a document) is scored against.
LOADTEST_QUERY = "Which text answers the question best?"
# A pair's logit may differ in the last bits when it is batched with others (other padding,
# other summation order): 1e-4 is far above that noise and far below a mix-up between texts.
LOGIT_ATOL = 1e-4


@dataclass(frozen=True)
class RerankRequest:
    """One parsed rerank request, whichever route it came by.

    Attributes:
        query: the query every document is scored against.
        documents: the documents (TEI's ``texts``), scored in this order.
        raw_scores: answer the logits instead of activated scores.
        return_documents: put each document's text in its answer entry.
        top_n: answer only the best ``top_n`` (``None``: all).
        truncate: cut pairs over the input bound instead of refusing them (413).
        tei: the request came by TEI's ``/rerank``, which applies sigmoid (else the model's
            own activation, as ``CrossEncoder.rank``).
    """

    query: str
    documents: list[str]
    raw_scores: bool = False
    return_documents: bool = False
    top_n: int | None = None
    truncate: bool = False
    tei: bool = True


class RerankingHandler(TaskHandler):
    task = TASK_RANKING
    model: Reranker
    v2_inputs = (TensorSpec("query", "BYTES", (1,)), TensorSpec("text", "BYTES", (-1,)))
    v2_outputs = (TensorSpec("score", "FP32", (-1,)), TensorSpec("logits", "FP32", (-1,)))
    truncate_parameter = "truncate"  # TEI's name

    def job(self, request: RerankRequest) -> Job:
        """The job of a parsed request: one ``(query, document)`` row per document.

        Raises:
            InputError: an empty query, no documents or a non-string one.
            ValidationError: more documents than ``max_client_batch_size``, or one over
                ``max_input_chars``.
        """
        pairs = query_pairs(request.query, request.documents)
        self.check_texts(pairs)
        return Job(list(pairs), options=request)

    def parse_v2(self, inputs: dict[str, list[str]], parameters: dict[str, Any]) -> Job:
        names = ("query", "text")
        query = required_v2_input(inputs, "query", names)
        if len(query) != 1:
            raise ValidationError(f"query must hold one string, got {len(query)}.")
        unknown = sorted(set(parameters) - set(_V2_PARAMETERS))
        if unknown:
            raise ValidationError(
                f"Unknown parameter(s) {unknown}; reranking takes {', '.join(_V2_PARAMETERS)}."
            )
        flags = {name: flag(parameters, name, False) for name in _V2_PARAMETERS}
        documents = required_v2_input(inputs, "text", names)
        return self.job(RerankRequest(query[0], list(documents), tei=False, **flags))

    def parse_hf(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        raise NotFoundError(
            "The Hugging Face routes do not serve text-ranking models; rerank with POST /rerank "
            '({"query", "texts"}) or POST /v1/rerank ({"query", "documents"}).'
        )

    def truncates(self, job: Job) -> bool:
        return job.options.truncate

    def truncate_fix(self, job: Job) -> str:
        return ('Send "truncate": true (on /rerank beside "texts", on V2 in the parameters) to '
                "cut it there, or shorten it.")

    def run_batch(self, key: Hashable, rows: list[EncodedRow]) -> Sequence[float]:
        return self.model.pair_logits_encoded(rows, batch_size=len(rows)).tolist()

    def answer_values(self, job: Job) -> int:
        return len(job.texts) * (3 if job.options.return_documents else 2)

    def scores(self, job: Job, logits: list[float]) -> np.ndarray:
        """The job's scores in document order: logits when it asked for raw scores, else the
        sigmoid TEI applies (``/rerank``) or the model's activation (CrossEncoder's)."""
        values = np.asarray(logits, dtype=np.float32)
        if job.options.raw_scores:
            return values
        return sigmoid(values) if job.options.tei else self.model.scores(values)

    def ranking(self, job: Job, logits: list[float]) -> list[dict[str, Any]]:
        """``{"corpus_id", "score"[, "text"]}`` of the job's best ``top_n``, best first (ties in
        document order), as ``Reranker.rank``."""
        request: RerankRequest = job.options
        documents = request.documents if request.return_documents else None
        return ranked(self.scores(job, logits), documents, request.top_n)

    def encode_v2(self, job: Job, results: list[float]) -> list[OutputTensor]:
        return [
            OutputTensor("score", "FP32", self.scores(job, results).astype(np.float32)),
            OutputTensor("logits", "FP32", np.asarray(results, dtype=np.float32)),
        ]

    def encode_hf(self, job: Job, results: list[float], route: str) -> Any:
        raise AssertionError("parse_hf refuses every Hugging Face request")  # never a job here


class RerankingAnswers(TaskAnswers):
    """The logit of ``(LOADTEST_QUERY, text)``; equal within :data:`LOGIT_ATOL`.

    Raw scores on every protocol, so the TEI route (which applies sigmoid) and the model's own
    activation (Cohere/infinity, V2 ``score``) are compared alike. ``rerank`` is TEI's
    ``POST /rerank``, ``v1-rerank`` infinity's Cohere-style ``POST /v1/rerank``; the Hugging
    Face routes do not serve rerankers (404: use one of those or ``v2``).
    """

    protocols: ClassVar[Mapping[str, Wire]] = {
        "rerank": Wire(
            "rerank (text-embeddings-inference)", "/rerank",
            lambda model, text: {"query": LOADTEST_QUERY, "texts": [text], "raw_scores": True},
            lambda body: float(body[0]["score"]),
        ),
        "v1-rerank": Wire(
            "rerank (infinity/Cohere)", "/v1/rerank",
            lambda model, text: {"model": model, "query": LOADTEST_QUERY, "documents": [text],
                                 "raw_scores": True},
            lambda body: float(body["results"][0]["relevance_score"]),
        ),
    }

    def v2_body(self, text: str, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"inputs": [
            {"name": "query", "shape": [1], "datatype": "BYTES", "data": [LOADTEST_QUERY]},
            {"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]},
        ], "parameters": parameters}

    def expected(self, model: Any, text: str, parameters: dict[str, Any]) -> Any:
        return float(model.predict((LOADTEST_QUERY, text), activation="none"))

    def from_hf(self, body: Any) -> Any:
        raise ValueError("the Hugging Face routes do not serve text-ranking models")

    def from_v2(self, outputs: dict[str, list[Any]]) -> Any:
        return float(outputs["logits"][0])

    def matches(self, answer: Any, want: Any) -> bool:
        return abs(answer - want) <= LOGIT_ATOL  # NaN fails
