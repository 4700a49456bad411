"""The embedding APIs clients already speak: text-embeddings-inference's ``POST /embed`` and
OpenAI's ``POST /v1/embeddings`` (request and answer shapes: ``onnx_engine.embedding_protocols``).

TEI's body names no model, so ``/embed`` serves the one feature-extraction model of the server;
OpenAI's ``"model"`` picks a served model by name.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.manifest import TASK_FEATURE_EXTRACTION
from onnx_engine.embedding_protocols import (
    openai_response,
    parse_openai,
    parse_tei,
    tei_response,
)
from onnx_engine.serving.body import read_json_object
from onnx_engine.serving.inference import JobResult, answered, client_gone
from onnx_engine.serving.state import ServerState
from onnx_engine.serving.task_models import named_task_model, only_task_model
from onnx_engine.serving.tasks.base import Job


def routes(state: ServerState) -> list[Route]:
    async def embed(request: Request) -> Response:  # text-embeddings-inference
        served = only_task_model(state, TASK_FEATURE_EXTRACTION, "/embed", "/v1/embeddings")
        body = await read_json_object(request, state.config)  # before admission (slow clients)
        return await answered(
            state, served, client_gone(request), lambda: served.handler.job(parse_tei(body)),
            lambda job, result: JSONResponse(
                tei_response(served.handler.vectors(job, result.values)), headers=result.headers))

    async def openai_embeddings(request: Request) -> Response:
        body = await read_json_object(request, state.config)
        parsed = parse_openai(body)
        served = named_task_model(state, parsed.model, TASK_FEATURE_EXTRACTION,
                                  "/v1/embeddings")

        def answer(job: Job, result: JobResult) -> Response:
            vectors = served.handler.vectors(job, result.values)
            return JSONResponse(openai_response(vectors, result.tokens, parsed.model,
                                                parsed.encoding_format), headers=result.headers)

        return await answered(
            state, served, client_gone(request), lambda: served.handler.job(parsed, openai=True),
            answer)

    return [
        Route("/embed", embed, methods=["POST"]),
        Route("/v1/embeddings", openai_embeddings, methods=["POST"]),
    ]
