"""Prefill/decode failover against real enginesim processes: dead, failing and crashing pods.

The router runs the round-robin profile (no health filter, so a dead pod is still tried) and
scrapes rarely. Round-robin orders pods by name and advances once per scheduling: each
request's decode pick starts at the first pod by name and its prefill pick at the second,
so the pods meant to fail are named to come first there.
"""

import asyncio
import json
import re

import aiohttp
import pytest

from router.harness import route, server, wait_until
from router.pd import decode_serves_alone, prefill_reusable
from router.routing import compile_server

pytestmark = pytest.mark.slow

ROUND_ROBIN = {"profile": "round-robin", "metricsInterval": 30}
NIXL = ("--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}))
PD_ROUTE = route("r", "m", [{"targetModels": [{"modelServerName": "pd"}]}])
PROMPT = " ".join(["bako"] * 200)
SERVER = "default/pd"


def pd_server(connector: str | None, engine: str = "vLLM", **spec) -> dict:
    extra = {"kvConnector": {"type": connector}} if connector else {}
    return server("pd", model="base-model", engine=engine, labels={"app": "pd"}, **extra, **spec,
                  selector={"pdGroup": {"groupKey": "group", "prefillLabels": {"role": "prefill"},
                                        "decodeLabels": {"role": "decode"}}})


def labels(role: str, group: str = "g0") -> dict[str, str]:
    return {"app": "pd", "group": group, "role": role}


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def killed(*engines):
    for e in engines:
        e.proc.kill()
        e.proc.wait()


def counter(r, name: str, *label_values: str) -> float:
    return getattr(r.router.guard.metrics, name).labels(*label_values)._value.get()


async def stream(r, body: dict) -> tuple[int, list[dict], bool]:
    """Status, the JSON events and whether the stream ended with [DONE]."""
    events, done = [], False
    async with await r.post("/v1/completions", {"model": "m", "stream": True, **body}) as resp:
        async for line in resp.content:
            if line.strip() == b"data: [DONE]":
                done = True
            elif line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
        return resp.status, events, done


def text_of(events: list[dict]) -> str:
    return "".join(c.get("text") or "" for e in events for c in e.get("choices") or ())


async def nixl_group(engines, prefill_args=(), decode_args=()):
    """p0-good and p1-bad prefill pods, one decode pod, all NIXL, in pdGroup g0."""
    good = await engines.start("p0-good", *NIXL, labels=labels("prefill"))
    bad = await engines.start("p1-bad", *NIXL, *prefill_args, labels=labels("prefill"))
    decode = await engines.start("d0", *NIXL, *decode_args, labels=labels("decode"))
    return good, bad, decode


async def test_prefill_pod_refusing_connections_is_retried_on_another_prefill_pod_of_the_group(
        engines, guarded_router):
    good, bad, decode = await nixl_group(engines)
    killed(bad)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), decode.endpoint()])
    status, body, headers = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and headers["x-caldera-pod"] == "default/d0"
    assert body["usage"]["completion_tokens"] == 4
    assert await metric(good.url, "vllm:prompt_tokens_total") == 200
    assert await metric(decode.url, "enginesim:remote_prefill_requests_total") == 1
    assert counter(r, "pd_prefill_retries", SERVER, "connect") == 1


async def test_a_prefill_pod_that_refused_a_connection_is_unhealthy_until_its_next_scrape(engines, guarded_router):
    good, bad, decode = await nixl_group(engines)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), decode.endpoint()])
    eps = r.router.state.endpoints
    await wait_until(lambda: all(ep.metrics.scraped_at > 0 and ep.healthy for ep in eps.values()))
    killed(bad)  # after the start-up scrape: only the failed request can tell the router
    status, _, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and not eps["default/p1-bad"].healthy and eps["default/p0-good"].healthy


async def test_prefill_pod_answering_5xx_is_retried_on_another_prefill_pod(engines, guarded_router):
    good, bad, decode = await nixl_group(
        engines, prefill_args=("--failure-rate", "1", "--failure-types", "server_error"))
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), decode.endpoint()])
    status, _, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200
    assert await metric(decode.url, "enginesim:remote_prefill_requests_total") == 1
    assert counter(r, "pd_prefill_retries", SERVER, "HTTP") == 1


async def test_a_client_error_from_the_prefill_pod_is_returned_not_retried(engines, guarded_router):
    good, bad, decode = await nixl_group(
        engines, prefill_args=("--failure-rate", "1", "--failure-types", "invalid_request"))
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), decode.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 400 and "default/p1-bad" in body["error"]["message"]
    assert await metric(good.url, "vllm:prompt_tokens_total") == 0


async def test_prefill_engine_dying_mid_prefill_is_retried_on_another_prefill_pod(engines, guarded_router):
    good = await engines.start("p0-good", *NIXL, labels=labels("prefill"))
    # 50x slower than real time: the 200-token prefill takes long enough to be killed in the middle.
    bad = await engines.start("p1-bad", *NIXL, labels=labels("prefill"), time_scale=0.02)
    decode = await engines.start("d0", *NIXL, labels=labels("decode"))
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), decode.endpoint()])
    request = asyncio.create_task(r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4}))
    await wait_until(lambda: metric(bad.url, "vllm:num_requests_running"), timeout=20, interval=0.01)
    killed(bad)
    status, body, _ = await request
    assert status == 200 and body["usage"]["completion_tokens"] == 4
    assert await metric(good.url, "vllm:prompt_tokens_total") == 200


async def test_prefill_pod_slower_than_the_traffic_policy_timeout_is_retried_on_another(engines, guarded_router):
    good = await engines.start("p0-good", *NIXL, labels=labels("prefill"))
    # 200x slower than real time: its prefill takes several times the 3 s timeout.
    slow = await engines.start("p1-bad", *NIXL, labels=labels("prefill"), time_scale=0.005)
    decode = await engines.start("d0", *NIXL, labels=labels("decode"))
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl", trafficPolicy={"timeout": "3s"})],
                             modelRoutes=[PD_ROUTE], endpoints=[good.endpoint(), slow.endpoint(), decode.endpoint()])
    status, _, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200
    assert await metric(good.url, "vllm:prompt_tokens_total") == 200
    assert counter(r, "pd_prefill_retries", SERVER, "timeout") == 1


async def test_vllm_request_falls_back_to_the_decode_pod_when_every_prefill_pod_is_down(engines, guarded_router):
    good, bad, decode = await nixl_group(engines)
    killed(good, bad)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), decode.endpoint()])
    status, body, headers = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and headers["x-caldera-pod"] == "default/d0"
    assert body["usage"]["completion_tokens"] == 4
    assert await metric(decode.url, "vllm:prompt_tokens_total") == 200  # prefilled by the decode pod itself
    assert await metric(decode.url, "enginesim:remote_prefill_requests_total") == 0
    assert counter(r, "pd_fallbacks", SERVER, "decode_only") == 1


async def test_without_fallback_every_prefill_pod_down_is_a_503_naming_the_failed_pods(engines, guarded_router):
    good, bad, decode = await nixl_group(engines)
    killed(good, bad)
    r = await guarded_router(**ROUND_ROBIN, resilience={"pdFallbackToDecode": False},
                             modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), decode.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 503 and body["error"]["code"] == "upstream_error"
    assert "default/p0-good: connect" in body["error"]["message"]
    assert "default/p1-bad: connect" in body["error"]["message"]
    assert await metric(decode.url, "vllm:prompt_tokens_total") == 0


async def test_failed_prefills_are_bounded_by_the_retry_attempts(engines, guarded_router):
    pods = [await engines.start(f"p{i}", *NIXL, labels=labels("prefill")) for i in range(3)]
    decode = await engines.start("d0", *NIXL, labels=labels("decode"))
    killed(*pods)
    r = await guarded_router(**ROUND_ROBIN, resilience={"retries": 1, "pdFallbackToDecode": False},
                             modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[*(p.endpoint() for p in pods), decode.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 503 and "attempt limit 2 reached" in body["error"]["message"]
    assert body["error"]["message"].count(": connect failed") == 2


async def test_sglang_request_with_every_prefill_pod_down_gets_a_503(engines, guarded_router):
    p = await engines.start("p0", "--mode", "sglang", "--disaggregation-mode", "prefill", bootstrap=True,
                            labels=labels("prefill"))
    d = await engines.start("d0", "--mode", "sglang", "--disaggregation-mode", "decode", labels=labels("decode"))
    killed(p)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server(None, engine="SGLang")], modelRoutes=[PD_ROUTE],
                             endpoints=[p.endpoint(), d.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 503 and "no prefill pod of pdGroup 'g0'" in body["error"]["message"]
    assert counter(r, "pd_fallbacks", SERVER, "unavailable") >= 1


async def test_sglang_prefill_pod_down_is_retried_with_a_new_bootstrap_room_on_another(engines, guarded_router):
    sglang_prefill = ("--mode", "sglang", "--disaggregation-mode", "prefill")
    good = await engines.start("p0-good", *sglang_prefill, bootstrap=True, labels=labels("prefill"))
    bad = await engines.start("p1-bad", *sglang_prefill, bootstrap=True, labels=labels("prefill"))
    d = await engines.start("d0", "--mode", "sglang", "--disaggregation-mode", "decode", labels=labels("decode"))
    killed(bad)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server(None, engine="SGLang")], modelRoutes=[PD_ROUTE],
                             endpoints=[good.endpoint(), bad.endpoint(), d.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and body["usage"]["completion_tokens"] == 4
    assert await metric(d.url, "enginesim:remote_prefill_requests_total") == 1
    assert counter(r, "pd_prefill_retries", SERVER, "connect") == 1


async def test_decode_pod_down_before_the_first_byte_is_served_by_another_decode_pod(engines, guarded_router):
    p = await engines.start("p0", *NIXL, labels=labels("prefill"))
    dead = await engines.start("d0-dead", *NIXL, labels=labels("decode"))
    alive = await engines.start("d1-alive", *NIXL, labels=labels("decode"))
    killed(dead)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[p.endpoint(), dead.endpoint(), alive.endpoint()])
    status, events, done = await stream(r, {"prompt": PROMPT, "max_tokens": 6})
    assert status == 200 and done
    assert sum(1 for e in events for c in e["choices"] if c.get("text")) == 6
    # The first prefill's KV was bound for the dead pod: prefilled again for the new one, which pulled it.
    assert await metric(alive.url, "enginesim:remote_prefill_requests_total") == 1
    assert await metric(alive.url, "enginesim:kv_transfer_failures_total") == 0
    assert counter(r, "retries", SERVER, "connect") == 1


async def test_sglang_decode_pod_down_is_retried_on_another_decode_pod_with_a_new_room(engines, guarded_router):
    p = await engines.start("p0", "--mode", "sglang", "--disaggregation-mode", "prefill", bootstrap=True,
                            labels=labels("prefill"))
    sglang_decode = ("--mode", "sglang", "--disaggregation-mode", "decode")
    dead = await engines.start("d0-dead", *sglang_decode, labels=labels("decode"))
    alive = await engines.start("d1-alive", *sglang_decode, labels=labels("decode"))
    killed(dead)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server(None, engine="SGLang")], modelRoutes=[PD_ROUTE],
                             endpoints=[p.endpoint(), dead.endpoint(), alive.endpoint()])
    status, body, headers = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and headers["x-caldera-pod"] == "default/d1-alive"
    assert body["usage"]["completion_tokens"] == 4
    assert await metric(alive.url, "enginesim:remote_prefill_requests_total") == 1


async def test_decode_pod_answering_5xx_is_retried_on_a_decode_pod_of_another_group(engines, guarded_router):
    p0 = await engines.start("p0", *NIXL, labels=labels("prefill", "g0"))
    p1 = await engines.start("p1", *NIXL, labels=labels("prefill", "g1"))
    bad = await engines.start("d0-bad", *NIXL, "--failure-rate", "1", "--failure-types", "server_error",
                              labels=labels("decode", "g0"))
    good = await engines.start("d1-good", *NIXL, labels=labels("decode", "g1"))
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[p0.endpoint(), p1.endpoint(), bad.endpoint(), good.endpoint()])
    status, _, headers = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and headers["x-caldera-pod"] == "default/d1-good"
    assert await metric(p1.url, "vllm:prompt_tokens_total") == 200  # prefilled again in the new pod's group
    assert await metric(good.url, "enginesim:remote_prefill_requests_total") == 1


async def test_http_connector_reuses_the_groups_prefill_when_the_decode_pod_is_retried(engines, guarded_router):
    p = await engines.start("p0", labels=labels("prefill"))
    dead = await engines.start("d0-dead", labels=labels("decode"))
    alive = await engines.start("d1-alive", labels=labels("decode"))
    killed(dead)
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("http")], modelRoutes=[PD_ROUTE],
                             endpoints=[p.endpoint(), dead.endpoint(), alive.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and body["usage"]["completion_tokens"] == 4
    assert await metric(p.url, "vllm:generation_tokens_total") == 1  # one prefill for both decode attempts


async def test_decode_crash_mid_stream_continues_on_another_decode_pod_with_the_unbroken_tokens(
        engines, guarded_router):
    p = await engines.start("p0", *NIXL, labels=labels("prefill"))
    crashing = await engines.start("d0-crash", *NIXL, "--crash-after-tokens", "3", labels=labels("decode"))
    alive = await engines.start("d1-alive", *NIXL, labels=labels("decode"))
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[p.endpoint(), crashing.endpoint(), alive.endpoint()])
    status, events, done = await stream(r, {"prompt": PROMPT, "max_tokens": 8})
    assert crashing.proc.wait(timeout=10) is not None  # the crash really happened mid-stream
    _, unbroken, _ = await stream(r, {"prompt": PROMPT, "max_tokens": 8})
    assert status == 200 and done
    assert text_of(events) == text_of(unbroken) and len({e["id"] for e in events}) == 1
    assert counter(r, "migrations", SERVER, "resumed") == 1


async def test_decode_crash_mid_stream_with_no_other_decode_pod_ends_the_stream_with_an_error_event(
        engines, guarded_router):
    p = await engines.start("p0", *NIXL, labels=labels("prefill"))
    d = await engines.start("d0", *NIXL, "--crash-after-tokens", "3", "--crash-mode", "abort", labels=labels("decode"))
    r = await guarded_router(**ROUND_ROBIN, modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                             endpoints=[p.endpoint(), d.endpoint()])
    status, events, done = await stream(r, {"prompt": PROMPT, "max_tokens": 8})
    assert status == 200 and done
    assert events[-1]["error"]["code"] == "stream_broken"
    assert sum(1 for e in events for c in e.get("choices") or () if c.get("text")) == 3
    async with r.session.get(r.url + "/healthz") as health:
        assert health.status == 200
    status, body, _ = await r.complete({"model": "m", "prompt": "after the crash", "max_tokens": 2})
    assert status == 200 and body["usage"]["completion_tokens"] == 2


def test_only_a_vllm_decode_pod_serves_a_request_without_its_prefill():
    assert decode_serves_alone(compile_server(pd_server("nixl")))
    assert not decode_serves_alone(compile_server(pd_server(None, engine="SGLang")))


def test_only_an_http_connector_prefill_in_the_same_group_is_reused_for_another_decode_pod():
    assert prefill_reusable("http", "g0", "g0")
    assert not prefill_reusable("http", "g0", "g1")
    assert not prefill_reusable("nixl", "g0", "g0") and not prefill_reusable("sglang", "g0", "g0")
