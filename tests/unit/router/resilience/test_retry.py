"""Retries before the client saw anything, against real enginesim processes."""

import pytest

from router.harness import route, server
from router.resilience.retry import RetryPolicy, backoff_s, policy_for, retryable
from router.routing import compile_server

pytestmark = pytest.mark.slow

ROUND_ROBIN = {"profile": "round-robin", "metricsInterval": 30}  # no health filter: the dead pod is tried first


async def _dead_then_alive(engines):
    dead = await engines.start("a-dead", labels={"app": "m"})
    alive = await engines.start("b-alive", labels={"app": "m"})
    dead.proc.kill()
    dead.proc.wait()
    return dead, alive


async def test_request_whose_first_pod_refuses_the_connection_succeeds_on_the_next(engines, guarded_router):
    dead, alive = await _dead_then_alive(engines)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[server("m", model="base-model")],
                             modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                             endpoints=[dead.endpoint(), alive.endpoint()])
    status, _body, headers = await r.complete({"model": "m", "prompt": "hello there", "max_tokens": 3})
    assert status == 200 and headers["x-caldera-pod"] == "default/b-alive"
    assert r.router.guard.metrics.retries.labels("default/m", "connect")._value.get() == 1


async def test_streams_also_fail_over_before_the_first_byte(engines, guarded_router):
    dead, alive = await _dead_then_alive(engines)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[server("m", model="base-model")],
                             modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                             endpoints=[dead.endpoint(), alive.endpoint()])
    async with await r.post("/v1/completions", {"model": "m", "prompt": "x y", "max_tokens": 4, "stream": True}) as resp:
        text = await resp.text()
    assert resp.status == 200 and text.endswith("data: [DONE]\n\n")


async def test_traffic_policy_attempts_bound_the_retries(engines, guarded_router):
    dead, alive = await _dead_then_alive(engines)
    r = await guarded_router(**ROUND_ROBIN, resilience={"retries": 0},
                             modelServers=[server("m", model="base-model")],
                             modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                             endpoints=[dead.endpoint(), alive.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": "hello", "max_tokens": 2})
    assert status == 502 and body["error"]["code"] == "upstream_error"


async def test_client_errors_from_the_engine_are_not_retried(engines, guarded_router):
    bad = await engines.start("a-bad", "--failure-rate", "1", "--failure-types", "invalid_request", labels={"app": "m"})
    good = await engines.start("b-good", labels={"app": "m"})
    r = await guarded_router(**ROUND_ROBIN, modelServers=[server("m", model="base-model")],
                             modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                             endpoints=[bad.endpoint(), good.endpoint()])
    status, _, headers = await r.complete({"model": "m", "prompt": "hello", "max_tokens": 2})
    assert status == 400 and headers["x-caldera-pod"] == "default/a-bad"


def test_server_traffic_policy_overrides_the_router_default():
    srv = compile_server(server("s", trafficPolicy={"timeout": "3s", "retry": {"attempts": 4,
                                                                                "retryInterval": "250ms"}}))
    assert policy_for(srv, 2, None) == RetryPolicy(attempts=5, interval_s=0.25, timeout_s=3.0)
    assert policy_for(compile_server(server("t")), 2, None).attempts == 3


def test_refused_connections_are_retried_at_once_and_others_after_the_interval():
    policy = RetryPolicy(attempts=3, interval_s=0.1, timeout_s=None)
    assert backoff_s(policy, "connect") == 0.0 and backoff_s(policy, "HTTP") == 0.1


def test_client_errors_are_not_retryable_but_overload_is():
    assert not retryable(400, "HTTP 400") and retryable(503, "HTTP 503") and retryable(429, "HTTP 429")


async def test_an_engine_shedding_load_with_429_is_retried_on_the_next_pod(engines, guarded_router):
    full = await engines.start("a-full", "--max-num-seqs", "1", "--max-waiting-queue-length", "0",
                               labels={"app": "m"}, time_scale=1.0)
    free = await engines.start("b-free", labels={"app": "m"})
    r = await guarded_router(**ROUND_ROBIN, modelServers=[server("m", model="base-model")],
                             modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                             endpoints=[full.endpoint(), free.endpoint()])
    async with r.session.post(full.url + "/v1/completions", json={
            "model": "base-model", "prompt": "hold", "max_tokens": 500, "stream": True}) as held:
        await held.content.readline()
        status, _, headers = await r.complete({"model": "m", "prompt": "hello", "max_tokens": 2})
    assert status == 200 and headers["x-caldera-pod"] == "default/b-free"
