"""The rerank APIs clients already speak: text-embeddings-inference's ``POST /rerank`` and the
Cohere/Jina-style ``POST /v1/rerank`` that infinity serves.

- TEI: ``{"query", "texts", "raw_scores", "return_text", "truncate"}`` ->
  ``[{"index", "score"[, "text"]}]``, best first; scores are the sigmoid of the logits unless
  ``raw_scores``; a pair over the input bound is refused (413) unless ``truncate``. The body
  names no model, so ``/rerank`` serves the one text-ranking model of the server.
- infinity (Cohere's shape): ``{"model", "query", "documents", "top_n", "return_documents",
  "raw_scores"}`` -> ``{"object": "rerank", "results": [{"index", "relevance_score"[,
  "document"]}], "model", "usage", "id", "created"}``, best first; ``relevance_score`` is
  ``CrossEncoder.rank``'s score (the model's activation). Pairs over the bound are cut there,
  as Cohere and infinity do. ``"model"`` may be left out when one text-ranking model is served.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.errors import InputError
from engine.tasks.classification import check_top_k
from engine.tasks.reranking import TASK_RANKING
from onnx_engine.json_fields import check_keys, flag
from onnx_engine.serving.body import read_json_object
from onnx_engine.serving.inference import JobResult, answered, client_gone
from onnx_engine.serving.state import ServerState
from onnx_engine.serving.task_models import named_task_model, only_task_model
from onnx_engine.serving.tasks.base import Job
from onnx_engine.serving.tasks.reranking import RerankRequest

_TEI_KEYS = ("query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction")
_COHERE_KEYS = ("model", "query", "documents", "top_n", "return_documents", "raw_scores")
_TEI_EXAMPLE = '{"query": "text", "texts": ["text", ...]}'
_COHERE_EXAMPLE = '{"model": "name", "query": "text", "documents": ["text", ...]}'


def routes(state: ServerState) -> list[Route]:
    async def tei_rerank(request: Request) -> Response:
        served = only_task_model(state, TASK_RANKING, "/rerank", "/v1/rerank")
        body = await read_json_object(request, state.config)  # before admission (slow clients)
        return await answered(
            state, served, client_gone(request), lambda: served.handler.job(parse_tei_rerank(body)),
            lambda job, result: JSONResponse(
                tei_answer(served.handler.ranking(job, result.values)), headers=result.headers))

    async def cohere_rerank(request: Request) -> Response:
        body = await read_json_object(request, state.config)
        parsed, name = parse_cohere_rerank(body)
        served = (named_task_model(state, name, TASK_RANKING, "/v1/rerank") if name is not None
                  else only_task_model(state, TASK_RANKING, "/v1/rerank", "/v1/rerank"))

        def answer(job: Job, result: JobResult) -> Response:
            ranking = served.handler.ranking(job, result.values)
            return JSONResponse(cohere_answer(ranking, served.name, sum(result.tokens)),
                                headers=result.headers)

        return await answered(state, served, client_gone(request),
                              lambda: served.handler.job(parsed), answer)

    return [
        Route("/rerank", tei_rerank, methods=["POST"]),
        Route("/v1/rerank", cohere_rerank, methods=["POST"]),
    ]


def parse_tei_rerank(body: Mapping[str, Any]) -> RerankRequest:
    """A TEI ``/rerank`` body.

    Raises:
        InputError: unknown keys, a missing or non-string ``query``, ``texts`` not a list of
            strings, non-boolean flags, or left truncation.
    """
    check_keys(body, _TEI_KEYS, _TEI_EXAMPLE)
    if body.get("truncation_direction", "Right") not in ("Right", "right"):
        raise InputError(
            'truncation_direction "Left" is not supported; texts are cut on the right.'
        )
    return RerankRequest(
        query=_query(body),
        documents=_documents(body, "texts", _TEI_EXAMPLE),
        raw_scores=flag(body, "raw_scores", False),
        return_documents=flag(body, "return_text", False),
        truncate=flag(body, "truncate", False),
        tei=True,
    )


def parse_cohere_rerank(body: Mapping[str, Any]) -> tuple[RerankRequest, str | None]:
    """A ``/v1/rerank`` body, and the model it names (``None``: not named).

    Raises:
        InputError: unknown keys, a non-string ``model`` or ``query``, ``documents`` not a list
            of strings, ``top_n`` not a positive integer, non-boolean flags.
    """
    check_keys(body, _COHERE_KEYS, _COHERE_EXAMPLE)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError(f'"model" must be the name of a served model, got {model!r:.40}.')
    top_n = body.get("top_n")
    try:
        check_top_k(top_n)
    except InputError:
        raise InputError(f'"top_n" must be a positive integer, got {top_n!r:.40}.') from None
    request = RerankRequest(
        query=_query(body),
        documents=_documents(body, "documents", _COHERE_EXAMPLE),
        raw_scores=flag(body, "raw_scores", False),
        return_documents=flag(body, "return_documents", False),
        top_n=top_n,
        truncate=True,
        tei=False,
    )
    return request, model


def tei_answer(ranking: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TEI's ``[{"index", "score"[, "text"]}]`` of a ranking (``Reranker.rank``'s entries)."""
    return [_renamed(entry, "index", "score", "text") for entry in ranking]


def cohere_answer(ranking: list[dict[str, Any]], model: str, tokens: int) -> dict[str, Any]:
    """infinity's ``/v1/rerank`` answer of a ranking; ``tokens`` the pairs' tokens as read."""
    return {
        "object": "rerank",
        "results": [_renamed(entry, "index", "relevance_score", "document") for entry in ranking],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "id": f"rerank-{uuid.uuid4()}",
        "created": int(time.time()),
    }


def _renamed(entry: dict[str, Any], index: str, score: str, text: str) -> dict[str, Any]:
    answer = {index: entry["corpus_id"], score: entry["score"]}
    if "text" in entry:
        answer[text] = entry["text"]
    return answer


def _query(body: Mapping[str, Any]) -> str:
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise InputError(f'"query" must be a non-empty string, got {query!r:.40}.')
    return query


def _documents(body: Mapping[str, Any], key: str, example: str) -> list[str]:
    documents = body.get(key)
    if not isinstance(documents, list) or not documents:
        raise InputError(f'"{key}" must be a non-empty list of strings; send {example}.')
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise InputError(f'"{key}"[{index}] is {type(document).__name__}, not a string.')
    return documents
