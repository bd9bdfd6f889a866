"""LoRA adapter routing and prefill/decode disaggregation against real enginesim processes."""

import json
import re

import aiohttp
import pytest

from router.harness import route, server, wait_until

pytestmark = pytest.mark.slow


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M):
        total += float(m.group(1))
    return total


async def loaded_adapters(url: str) -> set[str]:
    async with aiohttp.ClientSession() as s, s.get(url + "/v1/models") as r:
        return {m["id"] for m in (await r.json())["data"] if m.get("parent")}


@pytest.fixture
async def lora_cluster(engines, start_router):
    args = ("--enable-lora", "--max-loras", "2")
    a = await engines.start("a", *args, "--lora-modules", "sql=/adapters/sql", labels={"app": "s"})
    b = await engines.start("b", *args, labels={"app": "s"})
    c = await engines.start("c", *args, labels={"app": "s"})
    r = await start_router(modelsInterval=0.1, modelServers=[server("s", model="base-model")],
                           modelRoutes=[route("r", "base", [{"targetModels": [{"modelServerName": "s"}]}],
                                              loras=["sql", "poem"])],
                           endpoints=[a.endpoint(), b.endpoint(), c.endpoint()])
    await wait_until(lambda: "sql" in r.router.state.endpoints["default/a"].loaded_loras)
    return r, (a, b, c)


async def test_lora_request_goes_to_the_pod_with_the_adapter_loaded(lora_cluster):
    r, _ = lora_cluster
    pods = set()
    for i in range(10):
        status, body, headers = await r.complete({"model": "sql", "prompt": f"select {i}", "max_tokens": 2})
        assert status == 200 and body["model"] == "sql"
        pods.add(headers["x-caldera-pod"])
    assert pods == {"default/a"}


async def test_lora_adapter_is_loaded_on_a_pod_when_none_has_it(lora_cluster):
    r, engines = lora_cluster
    status, _, headers = await r.complete({"model": "poem", "prompt": "roses are", "max_tokens": 2})
    assert status == 200
    chosen = next(e for e in engines if f"default/{e.name}" == headers["x-caldera-pod"])
    assert "poem" in await loaded_adapters(chosen.url)
    _, _, again = await r.complete({"model": "poem", "prompt": "violets are", "max_tokens": 2})
    assert again["x-caldera-pod"] == headers["x-caldera-pod"]


def pd_server(connector: str | None, engine: str = "vLLM") -> dict:
    extra = {"kvConnector": {"type": connector}} if connector else {}
    return server("pd", model="base-model", engine=engine, labels={"app": "pd"}, **extra,
                  selector={"pdGroup": {"groupKey": "group", "prefillLabels": {"role": "prefill"},
                                        "decodeLabels": {"role": "decode"}}})


PD_ROUTE = route("r", "m", [{"targetModels": [{"modelServerName": "pd"}]}])
PROMPT = " ".join(["bako"] * 200)


async def test_vllm_nixl_decode_pulls_the_kv_from_the_prefill_pod(engines, start_router):
    nixl = ("--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}))
    p = await engines.start("p0", *nixl, labels={"app": "pd", "group": "g0", "role": "prefill"})
    d = await engines.start("d0", *nixl, labels={"app": "pd", "group": "g0", "role": "decode"})
    r = await start_router(modelServers=[pd_server("nixl")], modelRoutes=[PD_ROUTE],
                           endpoints=[p.endpoint(), d.endpoint()])
    events = []
    async with await r.post("/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 6,
                                                 "stream": True}) as resp:
        assert resp.status == 200 and resp.headers["x-caldera-pod"] == "default/d0"
        async for line in resp.content:
            if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                events.append(json.loads(line[6:]))
    assert sum(len(e["choices"][0]["text"]) > 0 for e in events if e["choices"]) == 6
    assert await metric(d.url, "enginesim:remote_prefill_requests_total") == 1
    assert await metric(d.url, "enginesim:kv_transfer_failures_total") == 0
    assert await metric(p.url, "vllm:prompt_tokens_total") == 200


async def test_sglang_prefill_and_decode_meet_through_the_bootstrap_room(engines, start_router):
    p = await engines.start("p0", "--mode", "sglang", "--disaggregation-mode", "prefill", bootstrap=True,
                            labels={"app": "pd", "group": "g0", "role": "prefill"})
    d = await engines.start("d0", "--mode", "sglang", "--disaggregation-mode", "decode",
                            labels={"app": "pd", "group": "g0", "role": "decode"})
    r = await start_router(modelServers=[pd_server(None, engine="SGLang")], modelRoutes=[PD_ROUTE],
                           endpoints=[p.endpoint(), d.endpoint()])
    status, body, headers = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 5})
    assert status == 200 and headers["x-caldera-pod"] == "default/d0"
    assert body["usage"]["completion_tokens"] == 5
    assert await metric(d.url, "enginesim:remote_prefill_requests_total") == 1


async def test_http_connector_prefills_one_token_then_decodes(engines, start_router):
    p = await engines.start("p0", labels={"app": "pd", "group": "g0", "role": "prefill"})
    d = await engines.start("d0", labels={"app": "pd", "group": "g0", "role": "decode"})
    r = await start_router(modelServers=[pd_server("http")], modelRoutes=[PD_ROUTE],
                           endpoints=[p.endpoint(), d.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 4})
    assert status == 200 and body["usage"]["completion_tokens"] == 4
    assert await metric(p.url, "vllm:generation_tokens_total") == 1


async def test_prefill_is_skipped_when_the_decode_pod_has_the_prompt_cached(engines, start_router):
    nixl = ("--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}))
    p = await engines.start("p0", *nixl, labels={"app": "pd", "group": "g0", "role": "prefill"})
    d = await engines.start("d0", *nixl, labels={"app": "pd", "group": "g0", "role": "decode"})
    r = await start_router(pd={"skipPrefillBelowTokens": 64}, modelServers=[pd_server("nixl")],
                           modelRoutes=[PD_ROUTE], endpoints=[p.endpoint(), d.endpoint()])
    await r.complete({"model": "m", "prompt": PROMPT, "max_tokens": 2})
    await r.complete({"model": "m", "prompt": PROMPT + " tumi", "max_tokens": 2})
    assert await metric(p.url, "vllm:prompt_tokens_total") == 200  # only the first request was prefilled
