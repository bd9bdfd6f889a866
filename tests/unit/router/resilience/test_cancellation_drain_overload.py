"""Client disconnects, SIGTERM drain and overload rejection, against real enginesim processes."""

import asyncio

import aiohttp
import orjson
import pytest

from router.harness import route, server, wait_until
from router.resilience.harness import engine_metric, read_sse

pytestmark = pytest.mark.slow

RUNNING = "vllm:num_requests_running"
ROUTES = {"modelServers": [server("m", model="base-model")],
          "modelRoutes": [route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])]}


def _long(max_tokens=400):
    return {"model": "m", "prompt": "a long answer please", "max_tokens": max_tokens, "stream": True}


async def _first_event(resp):
    async for line in resp.content:
        if line.startswith(b"data: "):
            return line


async def test_client_disconnect_cancels_the_upstream_request(engines, guarded_router):
    eng = await engines.start("e", labels={"app": "m"}, time_scale=1.0)
    r = await guarded_router(**ROUTES, endpoints=[eng.endpoint()])
    async with aiohttp.ClientSession() as probe:
        resp = await r.post("/v1/completions", _long())
        await _first_event(resp)
        assert await engine_metric(probe, eng.url, RUNNING) == 1
        resp.close()  # the client goes away mid-stream
        await wait_until(lambda: _running_is(probe, eng.url, 0), timeout=10)
    assert r.router.guard.metrics.cancelled._value.get() == 1


async def _running_is(session, url, n):
    return await engine_metric(session, url, RUNNING) == n


async def test_sigterm_finishes_in_flight_streams_and_refuses_new_requests(engines, router_processes):
    eng = await engines.start("e", labels={"app": "m"}, time_scale=1.0)
    rp = await router_processes("drain", {**ROUTES, "endpoints": [eng.endpoint()], "kvEvents": False})
    async with aiohttp.ClientSession() as s:
        streams = [await s.post(rp.url + "/v1/completions", json=_long(150)) for _ in range(3)]
        for resp in streams:
            await _first_event(resp)
        rp.terminate()

        async def refused():
            async with s.post(rp.url + "/v1/completions", json=_long(2)) as resp:
                return resp.status == 503 and resp.headers.get("retry-after") and await resp.json()

        body = await wait_until(refused, timeout=10)
        events = [await read_sse(resp) for resp in streams]
        assert body["error"]["code"] == "draining"
    assert all(e[-1] == b"[DONE]" and len(e) == 150 for e in events)  # 149 tokens after the first, + [DONE]
    assert await asyncio.to_thread(rp.proc.wait, 20) == 0


async def test_every_endpoint_past_its_inflight_threshold_gets_503_with_retry_after(engines, guarded_router):
    eng = await engines.start("e", labels={"app": "m"}, time_scale=1.0)
    r = await guarded_router(**ROUTES, endpoints=[eng.endpoint()],
                             resilience={"overload": {"maxInflightPerEndpoint": 1}, "retryAfter": 2})
    async with await r.post("/v1/completions", _long()) as held:
        await _first_event(held)
        async with await r.post("/v1/completions", _long(2)) as resp:
            body = await resp.json()
        assert resp.status == 503 and resp.headers["retry-after"] == "2"
        assert body["error"]["code"] == "overloaded"


async def test_every_endpoint_past_its_waiting_threshold_gets_503(engines, guarded_router):
    eng = await engines.start("e", "--max-num-seqs", "1", labels={"app": "m"}, time_scale=1.0)
    r = await guarded_router(**ROUTES, endpoints=[eng.endpoint()], resilience={"overload": {"maxWaiting": 1}})
    held = [await r.post("/v1/completions", _long()) for _ in range(2)]
    endpoint = next(iter(r.router.state.endpoints.values()))
    await wait_until(lambda: endpoint.metrics.waiting >= 1, timeout=10)
    status, body, headers = await r.complete({"model": "m", "prompt": "x", "max_tokens": 2})
    for resp in held:
        resp.close()
    assert status == 503 and body["error"]["code"] == "overloaded" and "retry-after" in {k.lower() for k in headers}


async def test_requests_beyond_the_admission_bound_get_503_at_once(engines, guarded_router):
    eng = await engines.start("e", labels={"app": "m"}, time_scale=1.0)
    r = await guarded_router(**ROUTES, endpoints=[eng.endpoint()], resilience={"maxConcurrentRequests": 1})
    async with await r.post("/v1/completions", _long()) as held:
        await _first_event(held)
        status, body, headers = await r.complete({"model": "m", "prompt": "x", "max_tokens": 2})
    assert status == 503 and body["error"]["code"] == "admission" and headers["Retry-After"] == "1"


async def test_readiness_turns_503_while_draining(engines, guarded_router):
    eng = await engines.start("e", labels={"app": "m"})
    r = await guarded_router(**ROUTES, endpoints=[eng.endpoint()])
    r.router.guard.begin_drain()
    async with r.session.get(r.url + "/readyz") as resp:
        assert resp.status == 503
    status, body, _ = await r.complete({"model": "m", "prompt": "x", "max_tokens": 1})
    assert status == 503 and orjson.dumps(body)
