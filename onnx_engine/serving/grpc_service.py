"""The Open Inference Protocol over gRPC (``serve --grpc-port``), beside the HTTP routes.

The grpc.aio server runs on the HTTP server's event loop, started and drained in the app's
lifespan (``build_app(..., alongside=GrpcListener(...).serving)``), over the same
:class:`ServerState`: each RPC answers what its HTTP V2 route answers, through the same request
path (``inference.answered``: admission, batcher, limits, timeout). Failures are the same
:class:`ServeError`, sent as the gRPC status of their HTTP status; the API key is the
``authorization: Bearer KEY`` metadata. Liveness and readiness need no key and answer
``ready: false`` while the models load or the server drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from engine.errors import InputError
from onnx_engine.serving.app import counted_failure, printable_message
from onnx_engine.serving.auth import authorized
from onnx_engine.serving.errors import UnauthorizedError
from onnx_engine.serving.grpc_codec import infer_response, model_metadata, parse_infer_request
from onnx_engine.serving.grpc_proto import messages as pb
from onnx_engine.serving.inference import ClientGone, JobResult, answered
from onnx_engine.serving.server import Listener
from onnx_engine.serving.state import ServerState
from onnx_engine.serving.tasks.base import Job
from onnx_engine.serving.v2_codec import V2Request
from onnx_engine.serving.v2_routes import server_metadata

T = TypeVar("T")
Code = grpc.StatusCode
# gRPC's message size limits are C ints: no message can be larger, whatever --max-body-bytes says.
_GRPC_MAX = 2**31 - 1
# The gRPC status of each HTTP status a ServeError carries; any other is INTERNAL.
STATUS_CODES = {
    400: Code.INVALID_ARGUMENT, 422: Code.INVALID_ARGUMENT, 413: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED, 404: Code.NOT_FOUND, 429: Code.RESOURCE_EXHAUSTED,
    503: Code.UNAVAILABLE, 408: Code.DEADLINE_EXCEEDED, 504: Code.DEADLINE_EXCEEDED,
    499: Code.CANCELLED,
}


class InferenceService:
    """The RPCs of ``inference.GRPCInferenceService`` over one server's state (the repository
    load/unload RPCs stay unimplemented: this server's models are fixed at start)."""

    RPCS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
            "ModelInfer")

    def __init__(self, state: ServerState) -> None:
        self._state = state

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._serving())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        async def ready() -> Any:
            if not self._serving():
                return pb.ModelReadyResponse(ready=False)
            self._state.model(request.name, request.version)  # NOT_FOUND: no such model
            return pb.ModelReadyResponse(ready=True)

        return await self._answered(context, request.name, ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        async def metadata() -> Any:
            return pb.ServerMetadataResponse(**server_metadata())

        return await self._answered(context, "", metadata)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        async def metadata() -> Any:
            served = self._state.model(request.name, request.version)
            return model_metadata(served.handler.v2_metadata(request.name))

        return await self._answered(context, request.name, metadata)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        state = self._state

        async def infer() -> Any:
            served = state.model(request.model_name, request.model_version)
            parsed: list[V2Request] = []  # the parsed request, which the answer echoes

            def make_job() -> Job:
                parsed.append(parse_infer_request(request))
                return served.handler.parse_v2(parsed[0].inputs, parsed[0].parameters)

            def answer(job: Job, result: JobResult) -> tuple[Any, dict[str, str]]:
                outputs = served.handler.encode_v2(job, result.values)
                return infer_response(served.name, parsed[0], outputs), result.headers

            response, headers = await answered(state, served, _call_ended(context), make_job,
                                               answer)
            context.set_trailing_metadata(tuple(headers.items()))  # the timing headers
            return response

        return await self._answered(context, request.model_name, infer)

    def _serving(self) -> bool:
        return self._state.ready and not self._state.draining

    async def _answered(self, context: Any, model: str, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` once the caller holds the key; a failure aborts the call with its status."""
        try:
            self._authorize(context)
            return await work()
        except Exception as error:
            failure = counted_failure(self._state, model, error)
            await context.abort(STATUS_CODES.get(failure.status, Code.INTERNAL),
                                printable_message(failure),
                                tuple((k.lower(), v) for k, v in failure.headers.items()))
            raise  # abort raises; this line only tells readers (and mypy) so

    def _authorize(self, context: Any) -> None:
        key = self._state.config.api_key
        if key is None:
            return
        metadata = [(name.encode(), value.encode())
                    for name, value in context.invocation_metadata() or ()
                    if isinstance(value, str)]
        if not authorized(metadata, key):
            raise UnauthorizedError(
                "Missing or wrong API key: send the metadata 'authorization: Bearer <key>'."
            )


def rpc_handler(service: InferenceService) -> grpc.GenericRpcHandler:
    """``service``'s RPCs at their wire names (``/inference.GRPCInferenceService/ModelInfer``,
    ...), each (de)serialized by its message class from :mod:`.grpc_proto.messages`; the RPCs it
    does not implement answer UNIMPLEMENTED, as grpc answers an unknown method."""
    handlers = {}
    for name in service.RPCS:
        request, response = pb.RPCS[name]
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            getattr(service, name), request_deserializer=request.FromString,
            response_serializer=response.SerializeToString)
    return grpc.method_handlers_generic_handler(pb.SERVICE, handlers)


class GrpcListener:
    """The gRPC listener of one server, on the HTTP listener's host (and its TLS, if any).

    ``port`` 0 lets the OS pick one; :attr:`port` is the bound one once serving. On SIGTERM the
    state drains: new calls get UNAVAILABLE while the accepted ones finish, by the same
    deadline as the HTTP requests (``drain_timeout_s`` from the signal); past it, the calls
    still open are cancelled (``ServerState.abandoned`` counts them).
    """

    def __init__(self, listener: Listener, port: int) -> None:
        self._listener = listener
        self._requested = port
        self.port: int | None = None

    @property
    def address(self) -> str:
        host = self._listener.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @contextlib.asynccontextmanager
    async def serving(self, state: ServerState) -> AsyncIterator[None]:
        """Serve gRPC while the block runs; drain by the deadline when it ends.

        Raises:
            InputError: the port cannot be bound (taken, or not this machine's address).
        """
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", min(state.config.max_body_bytes, _GRPC_MAX)),
            ("grpc.so_reuseport", 0),  # a port in use must fail, never be shared
        ])
        server.add_generic_rpc_handlers((rpc_handler(InferenceService(state)),))
        self.port = self._bind(server)
        await server.start()
        try:
            yield
        finally:
            state.begin_drain()
            elapsed = time.monotonic() - (state.drain_started or time.monotonic())
            await server.stop(max(0.0, self._listener.drain_timeout_s - elapsed))

    def _bind(self, server: Any) -> int:
        listener = self._listener
        host = f"[{listener.host}]" if ":" in listener.host else listener.host
        address = f"{host}:{self._requested}"
        try:
            if listener.ssl_certfile and listener.ssl_keyfile:
                credentials = grpc.ssl_server_credentials([(
                    Path(listener.ssl_keyfile).read_bytes(),
                    Path(listener.ssl_certfile).read_bytes())])
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if not port:
            raise InputError(
                f"--grpc-port {self._requested}: cannot listen on {listener.host} (the port is "
                "in use, or the host is not this machine's); pick another port (0: any free one)."
            )
        return int(port)


def _call_ended(context: Any) -> ClientGone:
    """The gRPC call's :data:`ClientGone`: the call ended (the client cancelled or went away)."""

    async def ended() -> None:
        done = asyncio.get_running_loop().create_future()
        context.add_done_callback(lambda _: done.done() or done.set_result(None))
        await done

    return ended
