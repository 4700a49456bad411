"""Streamed generation: server-sent events in text-generation-inference's shape.

A streamed request lives as a whole one does (admitted, parsed, bounded, queued: see
:mod:`onnx_engine.serving.inference`), but its work item carries a sink: the worker thread hands
each token of its row to the event loop as the decoder chooses it, and the loop sends it as
``data:{"index", "token", "generated_text": null, "details": null, "top_tokens": null}``; the last
token's event carries ``generated_text`` (and ``details`` when asked). Beam search streams only
that last event, as TGI does not stream beams. Nothing is sent until the first token is there,
so a failure before it (bad input, overload, timeout) is an ordinary HTTP error; one after it is
an ``{"error", "error_type"}`` event, as TGI sends it. A client that goes away cancels its row:
the decoder retires it at its next step and the other rows of the batch decode on unchanged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from engine.seq2seq.outputs import GeneratedSequence
from onnx_engine.serving.errors import (
    BackendError,
    ClientDisconnectedError,
    RequestTimeoutError,
    ServeError,
)
from onnx_engine.serving.inference import QueuedJob, admitted, disconnected, queue_job
from onnx_engine.serving.state import ServedModel, ServerState
from onnx_engine.serving.tasks.base import Job
from onnx_engine.serving.tasks.text2text import Text2TextHandler
from onnx_engine.serving.tgi_tokens import (
    TokenSpeller,
    TokenVocabulary,
    spelled,
    stream_details,
    stream_event,
)

_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies (nginx) must pass each event on at once, as TGI says
]
Update = tuple[int, float, bool]  # token id, logprob, last


class RowStream:
    """The event-loop end of one streamed row: its tokens in order, and a wake-up for the loop.

    ``push`` runs in the worker thread; everything else on the event loop. The batcher sets the
    row's result after the worker has pushed every token of the batch, so tokens always come
    before the result that ends the row.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.tokens: deque[Update] = deque()
        self.changed = asyncio.Event()
        self.gone = False  # the client disconnected
        self.failure: ServeError | None = None  # sent as the stream's last (error) event

    def push(self, token_id: int, logprob: float, last: bool) -> None:
        self._loop.call_soon_threadsafe(self._arrived, (token_id, logprob, last))

    def _arrived(self, update: Update) -> None:
        self.tokens.append(update)
        self.changed.set()

    def wake(self, *_: Any) -> None:
        self.changed.set()

    async def watch(self, request: Request) -> None:
        await disconnected(request)
        self.gone = True
        self.changed.set()


class TokenStream:
    """The ASGI answer of a streamed request: runs the request and sends its events.

    A route returns it in place of a response; everything before the first event raises as a
    route would (the app's error handling answers it), so the client sees a plain HTTP error.
    """

    def __init__(self, state: ServerState, served: ServedModel, request: Request,
                 make_job: Callable[[], Job]) -> None:
        self._state, self._served, self._request, self._make_job = state, served, request, make_job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, served = self._state, self._served
        async with admitted(state, served) as admission:
            job = self._make_job()
            handler = cast(Text2TextHandler, served.handler)  # the one whose parse_stream works
            row = RowStream(asyncio.get_running_loop())
            greedy = handler.streams_tokens(job)
            queued = await queue_job(admission, job, [row.push] if greedy else None)
            queued.items[0].future.add_done_callback(row.wake)
            watcher = asyncio.ensure_future(row.watch(self._request))
            try:
                events = _events(handler.vocabulary, job, queued, row, greedy)
                whole = await _send_events(events, send, state.config.request_timeout_s)
            finally:
                watcher.cancel()
                queued.cancel()
            served.batcher.metrics.request_duration.observe(time.perf_counter() - queued.started)
        if not whole:
            state.metrics.failures.labels(served.name, ClientDisconnectedError.error_type).inc()
        elif row.failure is not None:  # the client got an error event, not an answer
            state.metrics.failures.labels(served.name, row.failure.error_type).inc()
        else:
            served.batcher.metrics.successes.inc()


async def _send_events(
    events: AsyncGenerator[bytes, None], send: Send, timeout: float | None
) -> bool:
    """Send the stream; the first event (and the response's start) within ``timeout``.

    Returns whether the stream was sent whole (False: the client left after it started).

    Raises:
        RequestTimeoutError: no first event within ``timeout``.
        ServeError: the request failed before its first event (it has no answer yet).
    """
    try:
        first = await asyncio.wait_for(anext(events), timeout)
    except TimeoutError:
        raise RequestTimeoutError(
            f"No token was ready within the server's {timeout} s request timeout.") from None
    try:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        chunk: bytes | None = first
        while chunk is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await anext(events, None)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except (ClientDisconnectedError, OSError):  # OSError: the server's send to a closed socket
        return False
    finally:
        await events.aclose()
    return True


async def _events(vocabulary: TokenVocabulary, job: Job, queued: QueuedJob, row: RowStream,
                  greedy: bool) -> AsyncGenerator[bytes, None]:
    """The stream's events as SSE bytes; raises before the first one, sends an error after."""
    item = queued.items[0]
    speller = TokenSpeller(vocabulary)
    details = job.options.details
    ids: list[int] = []
    sent = 0
    try:
        while True:
            if row.tokens:
                token_id, logprob, last = row.tokens.popleft()
                ids.append(token_id)
                sent += 1
                token = speller.token(token_id, logprob, last)
                if not last:
                    yield _sse(stream_event(sent, token))
                    continue
                yield _sse(_last_event(vocabulary, sent, token, ids, queued, details))
                return
            if row.gone:
                raise ClientDisconnectedError("The client disconnected during its stream.")
            if item.future.done():
                result = item.future.result().value  # raises the batcher's error for this text
                if greedy or result is None:
                    raise ServeError("The stream ended before its last token.")
                yield _sse(_whole_sequence_event(vocabulary, result, queued, details))
                return
            row.changed.clear()
            await row.changed.wait()
    except ClientDisconnectedError:
        raise
    except Exception as error:
        if not sent:
            raise
        failure = error if isinstance(error, ServeError) else BackendError(
            f"The stream failed: {type(error).__name__}: {error}")
        row.failure = failure
        yield _sse({"error": str(failure), "error_type": failure.error_type})


def _last_event(vocabulary: TokenVocabulary, index: int, token: dict[str, Any], ids: list[int],
                queued: QueuedJob, details: bool) -> dict[str, Any]:
    """The last token's event, with the whole text (decoded as the engine decodes it)."""
    return stream_event(
        index, token, vocabulary.text(ids),
        stream_details(vocabulary, ids, queued.tokens[0]) if details else None,
    )


def _whole_sequence_event(vocabulary: TokenVocabulary, result: GeneratedSequence,
                          queued: QueuedJob, details: bool) -> dict[str, Any]:
    """The one event of a beam search stream: its last token, the text, the details."""
    ids = result.token_ids.tolist()
    logprobs = ([0.0] * len(ids) if result.token_logprobs is None
                else result.token_logprobs.tolist())
    last = spelled(vocabulary, ids, logprobs)[-1]
    return stream_event(1, last, result.text,
                        stream_details(vocabulary, ids, queued.tokens[0]) if details else None)


def _sse(event: dict[str, Any]) -> bytes:
    """One server-sent event: ``data:`` and compact JSON, as TGI writes them."""
    return b"data:" + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + (
        b"\n\n")
