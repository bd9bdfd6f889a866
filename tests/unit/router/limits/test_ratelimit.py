"""Token rate limits per ModelRoute: input and output, local and global through one Redis."""

import aiohttp
import pytest

from router.harness import free_port, server
from router.limits.ratelimit import TokenBucket, compile_limit, headers

PROMPT = "abcd " * 5  # 25 characters: 7 estimated tokens


def _routes(rate_limit):
    return {"modelServers": [server("m", model="base-model")],
            "modelRoutes": [{"metadata": {"name": "m", "namespace": "default"},
                             "spec": {"modelName": "m", "rateLimit": rate_limit,
                                      "rules": [{"targetModels": [{"modelServerName": "m"}]}]}}]}


def _body(max_tokens=2):
    return {"model": "m", "prompt": PROMPT, "max_tokens": max_tokens}


def test_bucket_refuses_more_than_it_holds_and_refills_at_its_rate():
    b = TokenBucket(capacity=10, rate=1.0, stamp=0.0)
    assert b.take(7, 0.0).allowed and not b.take(7, 0.0).allowed
    assert b.take(7, 4.0).allowed


def test_refusal_says_when_enough_tokens_will_be_back():
    b = TokenBucket(capacity=10, rate=2.0, stamp=0.0)
    b.take(10, 0.0)
    assert b.take(4, 0.0).retry_after_s == pytest.approx(2.0)


def test_charged_output_may_go_into_debt():
    b = TokenBucket(capacity=5, rate=1.0, stamp=0.0)
    b.charge(8, 0.0)
    assert not b.take(0, 0.0, need=1).allowed and b.take(0, 4.0, need=1).allowed


def test_limit_headers_name_both_buckets_and_the_wait():
    limit = compile_limit("default/m", {"inputTokensPerUnit": 10, "unit": "minute"})
    b = TokenBucket(capacity=10, rate=10 / 60, stamp=0.0)
    b.take(10, 0.0)
    h = headers(limit, b.take(5, 0.0), None)
    assert h["x-ratelimit-limit-input-tokens"] == "10" and h["x-ratelimit-remaining-input-tokens"] == "0"
    assert h["retry-after"] == "30" and h["x-ratelimit-unit"] == "minute"


def test_invalid_unit_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"spec\.rateLimit\.unit"):
        compile_limit("default/m", {"inputTokensPerUnit": 1, "unit": "fortnight"})


@pytest.mark.slow
async def test_input_tokens_beyond_the_route_limit_get_429_with_the_limit_headers(engines, start_router):
    eng = await engines.start("e", labels={"app": "m"})
    r = await start_router(**_routes({"inputTokensPerUnit": 10, "unit": "minute"}), endpoints=[eng.endpoint()],
                           kvEvents=False)
    ok, _, first = await r.complete(_body())
    status, body, h = await r.complete(_body())
    assert ok == 200 and first["x-ratelimit-remaining-input-tokens"] == "3"
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    assert h["x-ratelimit-limit-input-tokens"] == "10" and int(h["Retry-After"]) >= 1


@pytest.mark.slow
async def test_output_tokens_produced_are_charged_and_then_refused(engines, start_router):
    eng = await engines.start("e", labels={"app": "m"})
    r = await start_router(**_routes({"outputTokensPerUnit": 5, "unit": "hour"}), endpoints=[eng.endpoint()],
                           kvEvents=False)
    ok, _, _ = await r.complete(_body(max_tokens=8))
    status, body, h = await r.complete(_body())
    assert ok == 200 and status == 429 and "output" in body["error"]["message"]
    assert h["x-ratelimit-limit-output-tokens"] == "5" and h["x-ratelimit-remaining-output-tokens"] == "0"


@pytest.mark.slow
async def test_global_limit_is_shared_by_two_router_processes_through_redis(engines, router_processes,
                                                                             redis_server):
    eng = await engines.start("e", labels={"app": "m"})
    limit = {"inputTokensPerUnit": 10, "unit": "hour", "global": {"redis": {"address": redis_server.address}}}
    cfg = {**_routes(limit), "endpoints": [eng.endpoint()], "kvEvents": False}
    first = await router_processes("r1", dict(cfg))
    second = await router_processes("r2", dict(cfg))
    async with aiohttp.ClientSession() as s:
        async with s.post(first.url + "/v1/completions", json=_body()) as resp:
            assert resp.status == 200 and resp.headers["x-ratelimit-scope"] == "global"
        async with s.post(second.url + "/v1/completions", json=_body()) as resp:
            body = await resp.json()
            assert resp.status == 429 and resp.headers["x-ratelimit-remaining-input-tokens"] == "3"
    assert "input" in body["error"]["message"]


@pytest.mark.slow
async def test_unreachable_redis_lets_requests_through_and_is_counted(engines, start_router):
    eng = await engines.start("e", labels={"app": "m"})
    dead = f"127.0.0.1:{free_port()}"
    r = await start_router(**_routes({"inputTokensPerUnit": 1, "global": {"redis": {"address": dead}}}),
                           endpoints=[eng.endpoint()], kvEvents=False)
    status, _, _ = await r.complete(_body())
    assert status == 200
    assert r.router.guard.metrics.rate_limit_unavailable.labels("default/m")._value.get() == 1
