"""The router in front of real enginesim processes: routing, streaming, errors."""

import json

import pytest

from router.harness import route, server

pytestmark = pytest.mark.slow


@pytest.fixture
async def two_models(engines, start_router):
    small = await engines.start("small-0", "--served-model-name", "small-1b", labels={"app": "small"})
    big = await engines.start("big-0", "--served-model-name", "big-8b", labels={"app": "big"})
    r = await start_router(
        modelServers=[server("small", model="small-1b"), server("big", model="big-8b")],
        modelRoutes=[route("chat", "chat", [
            {"name": "premium", "modelMatch": {"headers": {"user-type": {"exact": "premium"}}},
             "targetModels": [{"modelServerName": "big"}]},
            {"name": "rest", "targetModels": [{"modelServerName": "small"}]}])],
        endpoints=[small.endpoint(), big.endpoint()])
    return r


async def test_header_rule_sends_premium_users_to_the_big_model(two_models):
    status, body, headers = await two_models.complete({"model": "chat", "prompt": "hi there", "max_tokens": 3},
                                                      {"user-type": "premium"})
    assert status == 200
    assert headers["x-caldera-server"] == "default/big" and body["model"] == "big-8b"


async def test_requests_without_the_header_go_to_the_default_rule(two_models):
    status, body, _headers = await two_models.complete({"model": "chat", "prompt": "hi there", "max_tokens": 3})
    assert status == 200 and body["model"] == "small-1b"


async def test_streaming_is_passed_through_event_by_event(two_models):
    events = []
    async with await two_models.post("/v1/completions", {"model": "chat", "prompt": "tell me", "max_tokens": 8,
                                                         "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.content:
            if line.startswith(b"data: "):
                events.append(line[6:].strip())
    assert events[-1] == b"[DONE]"
    tokens = [json.loads(e)["choices"][0]["text"] for e in events[:-1] if json.loads(e)["choices"]]
    assert len(tokens) == 8


async def test_chat_completions_are_routed(two_models):
    async with await two_models.post("/v1/chat/completions", {
            "model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "hello"}]}) as r:
        body = await r.json()
    assert r.status == 200 and body["object"] == "chat.completion"


async def test_models_lists_the_routed_names(two_models):
    async with two_models.session.get(two_models.url + "/v1/models") as r:
        body = await r.json()
    assert [m["id"] for m in body["data"]] == ["chat"]


async def test_unknown_model_gets_a_404_json_error(two_models):
    status, body, _ = await two_models.complete({"model": "nope", "prompt": "x"})
    assert status == 404 and body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"model": 5, "prompt": "x"}', b'{"model": "chat", "prompt": 7}',
                                 b'{"model": "chat", "prompt": "x", "max_tokens": "many"}', b"\xff\xfe"])
async def test_malformed_requests_get_400_json_and_the_router_keeps_serving(two_models, raw):
    async with await two_models.post("/v1/completions", raw) as r:
        body = await r.json(content_type=None)
    assert r.status == 400 and "message" in body["error"]
    status, _, _ = await two_models.complete({"model": "chat", "prompt": "still alive", "max_tokens": 1})
    assert status == 200


async def test_huge_body_gets_a_413_json_error(engines, start_router):
    eng = await engines.start("e", labels={"app": "s"})
    r = await start_router(maxBodyBytes=4096, modelServers=[server("s")],
                           modelRoutes=[route("r", "m", [{"targetModels": [{"modelServerName": "s"}]}])],
                           endpoints=[eng.endpoint()])
    status, body, _ = await r.complete({"model": "m", "prompt": "x" * 10_000})
    assert status == 413 and body["error"]["code"] == "body_too_large"


async def test_unknown_path_gets_a_404_json_error(two_models):
    async with two_models.session.get(two_models.url + "/v2/everything") as r:
        body = await r.json(content_type=None)
    assert r.status == 404 and "error" in body


async def test_canary_split_end_to_end_follows_the_weights(engines, start_router):
    v1 = await engines.start("v1-0", "--served-model-name", "m-v1", labels={"app": "v1"})
    v2 = await engines.start("v2-0", "--served-model-name", "m-v2", labels={"app": "v2"})
    r = await start_router(seed=11, modelServers=[server("v1", model="m-v1"), server("v2", model="m-v2")],
                           modelRoutes=[route("r", "m", [{"targetModels": [{"modelServerName": "v1", "weight": 70},
                                                                           {"modelServerName": "v2", "weight": 30}]}])],
                           endpoints=[v1.endpoint(), v2.endpoint()])
    n, hits = 600, 0
    for i in range(n):
        _, body, _ = await r.complete({"model": "m", "prompt": f"q{i}", "max_tokens": 1})
        hits += body["model"] == "m-v1"
    assert abs(hits / n - 0.7) <= 0.06


async def test_session_header_pins_a_user_to_one_canary_side(engines, start_router):
    v1 = await engines.start("v1-0", "--served-model-name", "m-v1", labels={"app": "v1"})
    v2 = await engines.start("v2-0", "--served-model-name", "m-v2", labels={"app": "v2"})
    r = await start_router(modelServers=[server("v1", model="m-v1"), server("v2", model="m-v2")],
                           modelRoutes=[route("r", "m", [{"targetModels": [{"modelServerName": "v1", "weight": 50},
                                                                           {"modelServerName": "v2", "weight": 50}]}])],
                           endpoints=[v1.endpoint(), v2.endpoint()])
    models = set()
    for i in range(30):
        _, body, _ = await r.complete({"model": "m", "prompt": f"q{i}", "max_tokens": 1}, {"x-session-id": "alice"})
        models.add(body["model"])
    assert len(models) == 1


async def test_metrics_count_requests_and_tokens(two_models):
    await two_models.complete({"model": "chat", "prompt": "count me", "max_tokens": 4})
    async with two_models.session.get(two_models.url + "/metrics") as r:
        text = await r.text()
    assert 'caldera_router_requests_total{model="chat",path="/v1/completions",route="default/chat"' in text
    assert 'caldera_router_tokens_total{kind="completion",model="chat"} 4.0' in text


async def test_rejected_requests_are_counted_by_status_and_code(two_models):
    await two_models.complete({"model": "nope", "prompt": "x"})
    async with two_models.session.get(two_models.url + "/metrics") as r:
        text = await r.text()
    assert 'caldera_router_rejected_total{code="model_not_found",status="404"} 1.0' in text


async def test_debug_state_explains_the_latest_routing_decisions(two_models):
    await two_models.complete({"model": "chat", "prompt": "explain me", "max_tokens": 2}, {"user-type": "premium"})
    async with two_models.session.get(two_models.url + "/debug/state") as r:
        state = await r.json()
    latest = state["recentDecisions"][-1]
    assert latest["model"] == "chat" and latest["chosen"] == latest["order"][0]
    assert latest["scores"][latest["chosen"]] and latest["chosen"] in latest["totals"]
