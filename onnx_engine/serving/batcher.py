"""Dynamic batching: one queue per model, texts from many requests merged into one engine call.

The loop (one asyncio task per model) takes a batch, runs it in the model's own worker thread
(ONNX Runtime releases the GIL, so the event loop keeps accepting and answering), scatters the
results to the waiting requests, and takes the next batch. A batch is built around the OLDEST
waiting text, so nothing starves: from a window of waiting texts with the same batching key
(T5: the generation parameters) sorted by token count, it grows the run of neighbours around that
text while the batch stays within ``max_batch_size`` texts and ``max_batch_tokens`` padded tokens
(longest x count). Texts whose request is gone (client disconnected, timed out) are dropped before
they run, and a handler whose ``run_batch`` takes ``cancelled`` (T5) is told which ones went away
while their batch runs, so it can stop their work early. A streamed text carries a sink for its
row's partial results (T5's tokens as they are chosen), which a handler whose ``run_batch`` takes
``sinks`` feeds from the worker thread; streamed and whole answers share batches. The queue
needs no bound of its own: admission (``max_concurrent_requests``) bounds it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InputError
from onnx_engine.serving.errors import BackendError, ValidationError
from onnx_engine.serving.metrics import ServerMetrics

# Texts looked at when choosing a batch, in units of max_batch_size: wide enough to find texts
# of similar length, narrow enough that building a batch stays microseconds.
_WINDOW_BATCHES = 4
RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]


@dataclass(eq=False)
class WorkItem:
    """One text waiting for the model; ``group`` is the request it belongs to; ``sink``, when
    the request streams, takes the row's partial results (called from the worker thread)."""

    payload: Any
    cost: int
    key: Hashable
    group: object
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    sink: Callable[..., None] | None = None


@dataclass(frozen=True)
class ItemResult:
    """The engine's result for one text, with the time it waited and the time its batch ran."""

    value: Any
    queue_s: float
    inference_s: float


class Batcher:
    """The queue and batch loop of one model.

    Args:
        model: the model's name (metrics labels).
        run_batch: ``run_batch(key, payloads) -> results``, one result per payload, called in the
            worker thread; it may raise ``engine.InputError`` for a bad payload. If it takes a
            ``cancelled`` argument, it gets a function returning, per payload, whether its
            request is gone (polled from the worker thread; those results are dropped). If it
            takes ``sinks``, a batch with streamed texts gets their sinks, one per payload (None
            for texts that do not stream).
    """

    def __init__(
        self,
        model: str,
        run_batch: RunBatch,
        max_batch_size: int,
        max_batch_tokens: int,
        max_queue_delay_s: float,
        metrics: ServerMetrics,
    ) -> None:
        self.model = model
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_batch_tokens = max_batch_tokens
        self._delay_s = max_queue_delay_s
        self.metrics = metrics.for_model(model)
        self._pending: deque[WorkItem] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{model}")
        self._task: asyncio.Task | None = None
        parameters = inspect.signature(run_batch).parameters
        self._cancellable = "cancelled" in parameters
        self._streams = "sinks" in parameters
        # Computed when scraped, from the queue itself: texts dropped because their request went
        # away stop counting at once, not when the loop next looks at the queue.
        metrics.queue_size.labels(model).set_function(self.waiting)
        # Requests admitted for this model that have not queued their texts yet (their body is
        # being read, parsed or tokenized): only they make waiting for company worthwhile.
        self.arriving = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"batcher-{self.model}"
        )

    async def close(self) -> None:
        """Run every text already queued, then stop the loop and the worker thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def submit(self, items: list[WorkItem]) -> None:
        self._pending.extend(items)
        self._wakeup.set()

    def waiting(self) -> int:
        """Texts queued whose request still waits for them (the queue-size gauge)."""
        return sum(not item.future.done() for item in self._pending)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._drop_abandoned()
            if not self._pending:
                self._wakeup.clear()
                if self._closing:
                    return
                continue
            await self._wait_for_fuller_batch()
            batch = self._take_batch()
            if batch:
                await self._run(loop, batch)

    async def _wait_for_fuller_batch(self) -> None:
        """Give a lone text up to the queue delay, counted from its arrival, to find company.

        Only while other requests are on their way: with none, waiting adds latency and no
        company (one client alone never waits), and under load the texts that arrive while a
        batch runs fill the next one anyway.
        """
        if len(self._pending) >= self._max_batch_size or self._closing or not self.arriving:
            return
        remaining = self._pending[0].enqueued + self._delay_s - time.perf_counter()
        if remaining > 0:
            await asyncio.sleep(remaining)
            self._drop_abandoned()

    def _drop_abandoned(self) -> None:
        if any(item.future.done() for item in self._pending):
            self._pending = deque(item for item in self._pending if not item.future.done())

    def _take_batch(self) -> list[WorkItem]:
        if not self._pending:
            return []
        oldest = self._pending[0]
        window: list[WorkItem] = []
        for item in self._pending:
            if item.key == oldest.key:
                window.append(item)
                if len(window) == self._max_batch_size * _WINDOW_BATCHES:
                    break
        window.sort(key=lambda item: item.cost)
        low = high = next(i for i, item in enumerate(window) if item is oldest)
        # window is sorted, so the padded cost of window[low:high+1] is window[high].cost x count.
        while high - low + 1 < self._max_batch_size:
            count = high - low + 2
            can_grow_up = high + 1 < len(window) and (
                window[high + 1].cost * count <= self._max_batch_tokens
            )
            can_grow_down = low > 0 and window[high].cost * count <= self._max_batch_tokens
            if can_grow_up and (not can_grow_down or (
                window[high + 1].cost - window[high].cost
                <= window[high].cost - window[low - 1].cost
            )):
                high += 1
            elif can_grow_down:
                low -= 1
            else:
                break
        batch = window[low : high + 1]
        taken = set(map(id, batch))
        self._pending = deque(item for item in self._pending if id(item) not in taken)
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[WorkItem]) -> None:
        started = time.perf_counter()
        for item in batch:
            self.metrics.queue_duration.observe(started - item.enqueued)
        call = functools.partial(self._run_batch, batch[0].key, [item.payload for item in batch])
        if self._cancellable:
            call = functools.partial(call, cancelled=lambda: [item.future.done() for item in batch])
        if self._streams and any(item.sink is not None for item in batch):
            call = functools.partial(call, sinks=[item.sink for item in batch])
        try:
            results = await loop.run_in_executor(self._executor, call)
        except InputError as error:
            await self._isolate(loop, batch, error)
            return
        except Exception as error:  # the engine failed on input it accepted: answer 500, go on
            _fail(batch, BackendError(f"The model failed on this batch: {error}"))
            return
        if len(results) != len(batch):  # a handler bug must not leave requests waiting forever
            _fail(batch, BackendError(
                f"The model returned {len(results)} results for {len(batch)} texts."))
            return
        elapsed = time.perf_counter() - started
        self.metrics.observe_batch(len(batch), max(i.cost for i in batch) * len(batch), elapsed)
        for item, value in zip(batch, results):
            if not item.future.done():
                item.future.set_result(ItemResult(value, started - item.enqueued, elapsed))

    async def _isolate(
        self, loop: asyncio.AbstractEventLoop, batch: list[WorkItem], error: InputError
    ) -> None:
        """One request's bad input must not fail the others: rerun each request on its own."""
        groups: dict[int, list[WorkItem]] = {}
        for item in batch:
            groups.setdefault(id(item.group), []).append(item)
        if len(groups) == 1:
            _fail(batch, ValidationError(str(error)))
            return
        for items in groups.values():
            await self._run(loop, items)


def _fail(batch: list[WorkItem], error: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)
