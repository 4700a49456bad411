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
from onnx_engine.serving.answer import built
from onnx_engine.serving.body import read_json_object
from onnx_engine.serving.errors import NotFoundError, ValidationError
from onnx_engine.serving.inference import admitted, run_job
from onnx_engine.serving.state import ServedModel, ServerState


def routes(state: ServerState) -> list[Route]:
    async def embed(request: Request) -> Response:  # text-embeddings-inference
        served = _only_embedding_model(state)
        body = await read_json_object(request, state.config)  # before admission (slow clients)
        async with admitted(state, served) as admission:
            job = served.handler.job(parse_tei(body))
            result = await run_job(state, admission, job, request)
            response = await built(served.handler.answer_values(job), lambda: JSONResponse(
                tei_response(served.handler.vectors(job, result.values)), headers=result.headers))
        state.metrics.successes.labels(served.name).inc()
        return response

    async def openai_embeddings(request: Request) -> Response:
        body = await read_json_object(request, state.config)
        parsed = parse_openai(body)
        served = _embedding_model(state, parsed.model)
        async with admitted(state, served) as admission:
            job = served.handler.job(parsed, openai=True)
            result = await run_job(state, admission, job, request)

            def answer() -> Response:
                vectors = served.handler.vectors(job, result.values)
                tokens = [value.tokens for value in result.values]
                return JSONResponse(openai_response(vectors, tokens, parsed.model,
                                                    parsed.encoding_format), headers=result.headers)

            response = await built(served.handler.answer_values(job), answer)
        state.metrics.successes.labels(served.name).inc()
        return response

    return [
        Route("/embed", embed, methods=["POST"]),
        Route("/v1/embeddings", openai_embeddings, methods=["POST"]),
    ]


def _embedding_model(state: ServerState, name: str) -> ServedModel:
    served = state.model(name)
    if served.handler.task != TASK_FEATURE_EXTRACTION:
        raise NotFoundError(
            f"Model '{name}' is a {served.handler.task} model; /v1/embeddings serves "
            f"feature-extraction models ({', '.join(_embedding_names(state)) or 'none here'})."
        )
    return served


def _only_embedding_model(state: ServerState) -> ServedModel:
    state.check_serving()
    names = _embedding_names(state)
    if not names:
        raise NotFoundError("This server has no feature-extraction model to serve /embed.")
    if len(names) > 1:
        raise ValidationError(
            f"This server has several embedding models ({', '.join(names)}) and /embed names "
            "none; use /v1/embeddings with \"model\", or /v2/models/NAME/infer."
        )
    return state.models[names[0]]


def _embedding_names(state: ServerState) -> list[str]:
    return sorted(name for name, served in state.models.items()
                  if served.handler.task == TASK_FEATURE_EXTRACTION)
