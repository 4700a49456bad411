"""Open Inference Protocol routes (KServe V2 / Triton HTTP): health, metadata, infer."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.version import __version__
from onnx_engine.serving.body import read_body
from onnx_engine.serving.inference import JobResult, answered, client_gone
from onnx_engine.serving.state import ServerState
from onnx_engine.serving.tasks.base import Job
from onnx_engine.serving.v2_codec import HEADER_LENGTH, V2Request, encode_response, parse_request

# The V2 protocol extensions this server implements (reported by GET /v2).
EXTENSIONS = ["binary_tensor_data"]


def server_metadata() -> dict[str, Any]:
    """What ``GET /v2`` (and gRPC's ServerMetadata) answers."""
    return {"name": "onnx-engine", "version": __version__, "extensions": EXTENSIONS}


def routes(state: ServerState) -> list[Route]:
    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        state.check_serving()
        return Response(status_code=200)

    async def metadata(request: Request) -> Response:
        return JSONResponse(server_metadata())

    async def model_metadata(request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse(state.model(name, _version(request)).handler.v2_metadata(name))

    async def model_ready(request: Request) -> Response:
        state.model(request.path_params["name"], _version(request))
        return Response(status_code=200)

    async def infer(request: Request) -> Response:
        served = state.model(request.path_params["name"], _version(request))
        body = await read_body(request, state.config)  # before admission (slow clients)
        parsed: list[V2Request] = []  # the parsed request, which the answer echoes (ids, outputs)

        def make_job() -> Job:
            parsed.append(parse_request(body, request.headers.get(HEADER_LENGTH)))
            return served.handler.parse_v2(parsed[0].inputs, parsed[0].parameters)

        def answer(job: Job, result: JobResult) -> Response:
            payload, headers = encode_response(
                served.name, parsed[0], served.handler.encode_v2(job, result.values))
            return Response(payload, headers={**headers, **result.headers})

        return await answered(state, served, client_gone(request), make_job, answer)

    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", metadata, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    ]


def _version(request: Request) -> str:
    """The model version a route names (empty: the route names none)."""
    return str(request.path_params.get("version", ""))
