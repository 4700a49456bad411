"""A request's life, top to bottom: admit -> tokenize (once) -> queue -> batch -> scatter -> answer.

The protocol routes read their body and hand :func:`answered` how to make the job and how to
answer it; everything between parsing and encoding happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request

from engine.tokenization import EncodedRow
from onnx_engine.serving.answer import built
from onnx_engine.serving.batcher import ItemResult, WorkItem
from onnx_engine.serving.errors import (
    ClientDisconnectedError,
    OverloadedError,
    RequestTimeoutError,
)
from onnx_engine.serving.state import ServedModel, ServerState
from onnx_engine.serving.tasks.base import Job, text_chars

# Tokenizing more characters than this on the event loop would stall other requests' answers:
# hand it to a thread instead (a short request tokenizes in microseconds, cheaper than the hop).
_INLINE_TOKENIZE_CHARS = 4096
T = TypeVar("T")
# Returns when the request's client has gone away: its texts are then dropped (HTTP: a
# disconnect message, see client_gone; gRPC: the call ended, see grpc_service).
ClientGone = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class JobResult:
    """The engine's results for a job's texts, in order, the tokens the model read for each
    (usage), and the timing headers to send."""

    values: list[Any]
    tokens: list[int]
    headers: dict[str, str]


@dataclass
class Admission:
    """A request's slot; ``queued`` once its texts are in the batcher's queue."""

    served: ServedModel
    queued: bool = False

    def queue(self, items: list[WorkItem]) -> None:
        """Hand the texts to the batcher; the request stops counting as arriving."""
        self.queued = True
        self.served.batcher.arriving -= 1
        self.served.batcher.submit(items)


@contextlib.asynccontextmanager
async def admitted(state: ServerState, served: ServedModel) -> AsyncIterator[Admission]:
    """Hold one of ``max_concurrent_requests`` slots, or fail at once with 429.

    Failing fast keeps latency bounded for the requests already admitted; the client (or its
    load balancer) retries after ``Retry-After`` or elsewhere. Until the request queues its
    texts it counts as arriving for its model's batcher (see ``Batcher.arriving``).
    """
    if state.in_flight >= state.config.max_concurrent_requests:
        raise OverloadedError(
            f"The server is at its limit of {state.config.max_concurrent_requests} concurrent "
            "requests; retry shortly.", {"Retry-After": "1"}
        )
    admission = Admission(served)
    state.in_flight += 1
    served.batcher.arriving += 1
    try:
        yield admission
    except asyncio.CancelledError:
        if state.draining:  # the host gave up on it (drain deadline): say so at exit
            state.abandoned += 1
        raise
    finally:
        state.in_flight -= 1
        if not admission.queued:
            served.batcher.arriving -= 1


async def answered(
    state: ServerState,
    served: ServedModel,
    gone: ClientGone,
    make_job: Callable[[], Job],
    answer: Callable[[Job, JobResult], T],
) -> T:
    """The request path every route shares once its body is read (before admission, so a slow
    client holds no slot): admitted, the job made (parsing errors answer under the slot they
    took), run, answered (in a thread when the answer is large), and counted as a success.

    Raises:
        ServeError: whatever admission, parsing or the run refused (see :func:`run_job`).
    """
    async with admitted(state, served) as admission:
        job = make_job()
        result = await run_job(state, admission, job, gone)
        response = await built(served.handler.answer_values(job), lambda: answer(job, result))
    served.batcher.metrics.successes.inc()
    return response


async def run_job(
    state: ServerState, admission: Admission, job: Job, gone: ClientGone
) -> JobResult:
    """Run a parsed job through the model's batcher and wait for every text's result.

    Raises:
        PayloadTooLargeError: a text over its model's input bound (``TaskHandler.bounded``).
        RequestTimeoutError: not done within ``request_timeout_s`` (its texts are dropped).
        ValidationError, BackendError: set by the batcher for this job's texts.
        ClientDisconnectedError: the client went away (its texts are dropped).
    """
    queued = await queue_job(admission, job)
    items, started = queued.items, queued.started
    try:
        results: list[ItemResult] = await _wait(items, gone, state.config.request_timeout_s)
    finally:
        queued.cancel()  # whatever ended the wait, texts nobody waits for must not run
    total = time.perf_counter() - started
    admission.served.batcher.metrics.request_duration.observe(total)
    headers = {
        "x-tokenization-time": _ms(queued.tokenized - started),
        "x-queue-time": _ms(max(result.queue_s for result in results)),
        "x-inference-time": _ms(max(result.inference_s for result in results)),
        "x-total-time": _ms(total),
    }
    return JobResult([result.value for result in results], queued.tokens, headers)


@dataclass(frozen=True)
class QueuedJob:
    """A job's texts in the batcher's queue: their work items, token counts and timestamps."""

    items: list[WorkItem]
    tokens: list[int]
    started: float
    tokenized: float

    def cancel(self) -> None:
        """Nobody waits for these texts any more: the batcher drops or stops them."""
        for item in self.items:
            item.future.cancel()


async def queue_job(
    admission: Admission, job: Job,
    sinks: Sequence[Callable[..., None] | None] | None = None,
) -> QueuedJob:
    """Encode a job's texts (once) within bound and hand them to the batcher; ``sinks`` (one per
    text) stream.

    Raises:
        PayloadTooLargeError: a text over its model's input bound (``TaskHandler.bounded``).
    """
    served = admission.served
    started = time.perf_counter()
    rows = await _encoded(served, job)
    tokens = [row.tokens for row in rows]
    tokenized = time.perf_counter()
    served.batcher.metrics.tokenization_duration.observe(tokenized - started)
    loop = asyncio.get_running_loop()
    items = [
        WorkItem(row, cost, job.key, job, loop.create_future(),
                 sink=None if sinks is None else sinks[index])
        for index, (row, cost) in enumerate(zip(rows, served.handler.costs(job, tokens)))
    ]
    admission.queue(items)
    return QueuedJob(items, tokens, started, tokenized)


async def _encoded(served: ServedModel, job: Job) -> list[EncodedRow]:
    """The job's texts encoded within its model's input bound (may raise 413)."""
    size = sum(map(text_chars, job.texts))
    if size <= _INLINE_TOKENIZE_CHARS:
        return served.handler.bounded(job)
    return await asyncio.to_thread(served.handler.bounded, job)


async def _wait(items: list[WorkItem], gone: ClientGone, timeout: float | None) -> list[ItemResult]:
    gathered = asyncio.gather(*(item.future for item in items))
    gathered.add_done_callback(_consume)  # however the wait ends (even cancelled), never "lost"
    disconnect = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait(
            {gathered, disconnect}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        disconnect.cancel()
    if gathered in done:
        return gathered.result()
    gathered.cancel()
    if disconnect in done:
        raise ClientDisconnectedError("The client disconnected before its answer was ready.")
    raise RequestTimeoutError(
        f"The request was not answered within the server's {timeout} s request timeout."
    )


def client_gone(request: Request) -> ClientGone:
    """An HTTP request's :data:`ClientGone`: its disconnect message."""
    return lambda: disconnected(request)


async def disconnected(request: Request) -> None:
    """Return when the client goes away (the body has been read, so only that can arrive)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _consume(future: asyncio.Future) -> None:
    """Retrieve the outcome of a wait we gave up on, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"
