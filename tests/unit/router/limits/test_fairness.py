"""Per-user fairness: lowest recent usage first, reserved slots for light users, heavy users throttled."""

import asyncio
import time

import aiohttp
import pytest

from router.harness import route, server, wait_until
from router.limits.fairness import ANONYMOUS, FairGate, FairnessWeights, QueueTimeout, UsageWindow
from router.resilience.harness import engine_metric


def _gate(max_concurrent=1, reserved=0, window=300.0):
    return FairGate(max_concurrent, reserved, UsageWindow(window_s=window), FairnessWeights())


async def _queued(gate, user):
    task = asyncio.create_task(gate.acquire(user, timeout_s=30))
    await wait_until(lambda: user in gate.waiting or task.done(), timeout=5, interval=0.001)
    return task


async def test_the_waiting_user_with_the_least_recent_usage_goes_first():
    gate = _gate()
    await gate.acquire("holder", 1)
    gate.usage.add("heavy", 1000, 1, now=time.time())
    heavy = await _queued(gate, "heavy")
    light = await _queued(gate, "light")
    gate.release("holder")
    await asyncio.wait_for(light, 1)
    assert not heavy.done()
    gate.release("light")
    await asyncio.wait_for(heavy, 1)


async def test_requests_of_one_user_are_served_in_arrival_order():
    gate = _gate()
    await gate.acquire("holder", 1)
    first = await _queued(gate, "u")
    second = asyncio.create_task(gate.acquire("u", 30))
    await wait_until(lambda: gate.queued == 2, timeout=5, interval=0.001)
    gate.release("holder")
    await asyncio.wait_for(first, 1)
    assert not second.done()
    second.cancel()


async def test_anonymous_requests_wait_behind_identified_users():
    gate = _gate()
    await gate.acquire("holder", 1)
    gate.usage.add("busy", 10**6, 1, now=time.time())
    anon = await _queued(gate, ANONYMOUS)
    busy = await _queued(gate, "busy")
    gate.release("holder")
    await asyncio.wait_for(busy, 1)
    assert not anon.done()
    anon.cancel()


async def test_a_flooding_user_never_takes_the_reserved_slots():
    gate = _gate(max_concurrent=4, reserved=1)
    for _ in range(3):
        await gate.acquire("heavy", 1)
    heavy = await _queued(gate, "heavy")
    await asyncio.wait_for(gate.acquire("light", 1), 1)  # straight into the reserved slot
    assert not heavy.done() and gate.inflight == 4
    heavy.cancel()


async def test_a_request_waiting_past_the_queue_timeout_is_refused():
    gate = _gate()
    await gate.acquire("holder", 1)
    with pytest.raises(QueueTimeout):
        await gate.acquire("late", timeout_s=0.05)
    assert gate.queued == 0


async def test_a_cancelled_waiter_leaves_the_queue():
    gate = _gate()
    await gate.acquire("holder", 1)
    task = await _queued(gate, "gone")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert gate.queued == 0 and not gate.waiting


def test_usage_is_forgotten_after_the_window():
    w = UsageWindow(window_s=10, buckets=10)
    w.add("u", 50, 1, now=100.0)
    assert w.usage("u", 105.0) == (50, 1) and w.usage("u", 111.0) == (0, 0) and w.users() == 0


@pytest.mark.slow
async def test_flooding_user_is_throttled_while_a_light_user_is_admitted_at_once(engines, start_router):
    eng = await engines.start("e", labels={"app": "m"}, time_scale=1.0)
    r = await start_router(modelServers=[server("m", model="base-model")], kvEvents=False,
                           modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                           endpoints=[eng.endpoint()], fairness={"maxConcurrent": 4, "reservedSlots": 1})
    flood = {"model": "m", "prompt": "flood " * 20, "max_tokens": 60}
    heavy = [asyncio.create_task(r.complete(flood, {"x-user-id": "heavy"})) for _ in range(8)]
    gate = await wait_until(lambda: r.router.guard.fairness.gates.get("m"), timeout=5)
    await wait_until(lambda: gate.queued == 5, timeout=10)  # 3 admitted, the rest held in the queue
    status, _, headers = await r.complete({"model": "m", "prompt": "quick", "max_tokens": 2},
                                          {"x-user-id": "light"})
    assert status == 200 and headers["x-caldera-queue-wait-ms"] == "0" and gate.queued >= 1
    results = await asyncio.gather(*heavy)
    assert all(s == 200 for s, _, _ in results)
    assert max(int(h["x-caldera-queue-wait-ms"]) for _, _, h in results) > 0


@pytest.mark.slow
async def test_fairness_metrics_report_queue_size_and_waits(engines, start_router):
    eng = await engines.start("e", labels={"app": "m"})
    r = await start_router(modelServers=[server("m", model="base-model")], kvEvents=False,
                           modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                           endpoints=[eng.endpoint()], fairness={"maxConcurrent": 1})
    await asyncio.gather(*[r.complete({"model": "m", "prompt": "x", "max_tokens": 2}, {"x-user-id": "u"})
                           for _ in range(3)])
    async with aiohttp.ClientSession() as s, s.get(r.url + "/metrics") as resp:
        text = await resp.text()
    assert 'caldera_router_fairness_queue_duration_seconds_count{model="m"} 3.0' in text
    assert 'caldera_router_fairness_queue_size{model="m"} 0.0' in text


@pytest.mark.slow
async def test_a_client_leaving_while_queued_frees_its_place_and_never_reaches_the_engine(engines, guarded_router):
    eng = await engines.start("e", labels={"app": "m"}, time_scale=1.0)
    r = await guarded_router(modelServers=[server("m", model="base-model")],
                             modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                             endpoints=[eng.endpoint()], fairness={"maxConcurrent": 1})
    long = {"model": "m", "prompt": "hold", "max_tokens": 400, "stream": True}
    async with await r.post("/v1/completions", long, {"x-user-id": "a"}) as held:
        await held.content.readline()
        gate = r.router.guard.fairness.gates["m"]
        queued = asyncio.create_task(r.post("/v1/completions", long, {"x-user-id": "b"}))
        await wait_until(lambda: gate.queued == 1, timeout=10)
        async with aiohttp.ClientSession() as other:  # the waiting client goes away
            queued.cancel()
            await asyncio.gather(queued, return_exceptions=True)
            await wait_until(lambda: gate.queued == 0, timeout=10)
            assert r.router.guard.metrics.cancelled._value.get() == 1 and gate.inflight == 1
            assert await engine_metric(other, eng.url, "vllm:num_requests_running") == 1
