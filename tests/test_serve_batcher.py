"""The batcher on its own: budgets, batching keys, dropped requests, isolation of bad input."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import InputError
from onnx_engine.serving.batcher import Batcher, WorkItem
from onnx_engine.serving.errors import BackendError, ValidationError
from onnx_engine.serving.metrics import ServerMetrics


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


async def _serve(items_spec, max_batch_size=4, max_batch_tokens=100, cancel=()):
    """Queue (payload, cost, key, group) items at once; return the engine calls made and each
    item's outcome. ``submit`` is synchronous, so all items wait before the first batch forms."""
    calls = []

    def run_batch(key, payloads):
        calls.append((key, list(payloads)))
        if "bad" in payloads:
            raise InputError("payload 'bad' is bad")
        return [payload.upper() for payload in payloads]

    batcher = Batcher("m", run_batch, max_batch_size, max_batch_tokens, 0.0, ServerMetrics())
    batcher.start()
    loop = asyncio.get_running_loop()
    items = [WorkItem(p, c, k, g, loop.create_future()) for p, c, k, g in items_spec]
    for index in cancel:
        items[index].future.cancel()
    batcher.submit(items)
    outcomes = []
    for item in items:
        try:
            outcomes.append((await item.future).value)
        except asyncio.CancelledError:
            outcomes.append("cancelled")
        except ValidationError as error:
            outcomes.append(f"422: {error}")
    await batcher.close()
    return calls, outcomes


def test_batches_respect_size_token_budget_and_key():
    spec = [(f"t{i}", cost, key, i) for i, (cost, key) in enumerate(
        [(10, "a"), (40, "a"), (12, "b"), (11, "a"), (45, "a"), (9, "a"), (200, "a"), (10, "b")])]
    calls, outcomes = _run(_serve(spec))
    assert outcomes == [payload.upper() for payload, *_ in spec]  # each gets its own answer
    cost = {payload: c for payload, c, *_ in spec}
    key = {payload: k for payload, _, k, _ in spec}
    for call_key, payloads in calls:
        assert {key[p] for p in payloads} == {call_key}
        assert len(payloads) <= 4
        assert len(payloads) == 1 or max(cost[p] for p in payloads) * len(payloads) <= 100
    assert sorted(p for _, payloads in calls for p in payloads) == sorted(cost)
    # Similar lengths are grouped: the oldest "a" text (cost 10) runs with 11 and 9, not 40/45.
    assert sorted(calls[0][1]) == ["t0", "t3", "t5"]


def test_abandoned_items_never_run():
    spec = [(f"t{i}", 5, "a", i) for i in range(4)]
    calls, outcomes = _run(_serve(spec, cancel=(1, 2)))
    assert outcomes == ["T0", "cancelled", "cancelled", "T3"]
    assert [p for _, payloads in calls for p in payloads] == ["t0", "t3"]


@pytest.mark.parametrize("bad_group_size", [1, 2])
def test_bad_input_fails_only_its_request(bad_group_size):
    bad_request, good_request = object(), object()
    spec = [("ok1", 5, "a", good_request), ("bad", 5, "a", bad_request),
            ("ok2", 5, "a", good_request)]
    if bad_group_size == 2:
        spec.append(("fine-but-same-request", 5, "a", bad_request))
    _, outcomes = _run(_serve(spec))
    assert outcomes[0] == "OK1" and outcomes[2] == "OK2"
    assert outcomes[1] == "422: payload 'bad' is bad"
    if bad_group_size == 2:  # the whole request with the bad text fails, as a unit
        assert outcomes[3] == "422: payload 'bad' is bad"


def test_engine_failure_answers_backend_error():
    async def scenario():
        def run_batch(key, payloads):
            raise RuntimeError("kernel exploded")

        batcher = Batcher("m", run_batch, 4, 100, 0.0, ServerMetrics())
        batcher.start()
        item = WorkItem("x", 1, None, object(), asyncio.get_running_loop().create_future())
        batcher.submit([item])
        with pytest.raises(BackendError, match="kernel exploded") as raised:
            await item.future
        await batcher.close()
        return raised.value

    error = _run(scenario())
    assert error.status == 500 and error.error_type == "backend"
