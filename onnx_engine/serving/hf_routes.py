"""Hugging Face routes: the Inference API shape and text-generation-inference's ``/generate``.

``huggingface_hub.InferenceClient(model="http://HOST:PORT/models/NAME")`` posts
``{"inputs": ..., "parameters": {...}}`` to that URL for every task; ``/generate`` takes TGI's
``{"inputs": str, "parameters": {...}}`` and answers ``{"generated_text": ...}``;
``/generate_stream``, or ``"stream": true`` on either, answers TGI's server-sent events
(:mod:`onnx_engine.serving.streaming`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from onnx_engine.serving.body import read_json_object
from onnx_engine.serving.errors import ValidationError
from onnx_engine.serving.inference import answered, client_gone
from onnx_engine.serving.state import ServerState
from onnx_engine.serving.streaming import TokenStream

# Body keys besides inputs/parameters that the HF clients send and that change nothing here:
# the Inference API's "options" (wait_for_model, use_cache); TGI's "stream" picks the answer.
_BODY_KEYS = ("inputs", "parameters", "options", "stream")


def routes(state: ServerState) -> list[Route]:
    async def run(request: Request, route: str) -> Response | TokenStream:
        served = state.model(request.path_params["name"])
        body = await read_json_object(request, state.config)  # before admission (slow clients)
        if _streams(body, route):
            parse_as = "generate" if route == "generate_stream" else route
            return TokenStream(state, served, request, lambda: served.handler.parse_stream(
                *_inputs_and_parameters(body, parse_as), parse_as))
        return await answered(
            state, served, client_gone(request),
            lambda: served.handler.parse_hf(*_inputs_and_parameters(body, route), route),
            lambda job, result: JSONResponse(
                served.handler.encode_hf(job, result.values, route), headers=result.headers))

    async def task(request: Request) -> Response | TokenStream:
        return await run(request, "task")

    async def generate(request: Request) -> Response | TokenStream:
        return await run(request, "generate")

    async def generate_stream(request: Request) -> Response | TokenStream:
        return await run(request, "generate_stream")

    return [
        Route("/models/{name}", task, methods=["POST"]),
        Route("/models/{name}/generate", generate, methods=["POST"]),
        Route("/models/{name}/generate_stream", generate_stream, methods=["POST"]),
    ]


def _streams(body: dict[str, Any], route: str) -> bool:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ValidationError(f'"stream" must be true or false, got {stream!r}.')
    return route == "generate_stream" or stream is True


def _inputs_and_parameters(body: dict[str, Any], route: str) -> tuple[Any, dict[str, Any]]:
    unknown = sorted(set(body) - set(_BODY_KEYS))
    if unknown:
        raise ValidationError(
            f"Unknown body key(s) {unknown}; send {{\"inputs\": ..., \"parameters\": {{...}}}}."
        )
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValidationError('"parameters" must be a JSON object.')
    if route == "generate" and not isinstance(body.get("inputs"), str):
        raise ValidationError('/generate takes one text: {"inputs": "..."}.')
    return body.get("inputs"), parameters
