"""Request migration: a stream whose engine dies mid-way continues on another pod, token-exact."""

import aiohttp
import orjson
import pytest

from router.harness import route, server
from router.request import CHAT_COMPLETIONS, COMPLETIONS, parse_request
from router.resilience.harness import read_sse
from router.resilience.migration import NotMigratable, StreamRelay, closing_events, resume_body

ROUND_ROBIN = {"profile": "round-robin", "metricsInterval": 30}
PROMPT = "tell me a long story about the sea"


def _texts(events, chat=False):
    out = []
    for e in events:
        if e == b"[DONE]":
            continue
        for c in orjson.loads(e)["choices"]:
            t = c["delta"].get("content") if chat else c["text"]
            if t:
                out.append(t)
    return out


async def _crash_pair(engines, *crash_args):
    crashing = await engines.start("a-crashing", "--crash-after-tokens", "5", *crash_args, labels={"app": "m"})
    healthy = await engines.start("b-healthy", labels={"app": "m"})
    return crashing, healthy


async def _router(guarded_router, *eps):
    return await guarded_router(**ROUND_ROBIN, modelServers=[server("m", model="base-model")],
                                modelRoutes=[route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])],
                                endpoints=[e.endpoint() for e in eps])


async def _direct(url, path, body):
    async with aiohttp.ClientSession() as s, s.post(url + path, json=body) as resp:
        return await read_sse(resp)


@pytest.mark.slow
async def test_completion_stream_broken_after_n_tokens_continues_with_exactly_the_unbroken_tokens(
        engines, guarded_router):
    crashing, healthy = await _crash_pair(engines)
    body = {"model": "m", "prompt": PROMPT, "max_tokens": 12, "stream": True,
            "stream_options": {"include_usage": True}}
    reference = await _direct(healthy.url, COMPLETIONS, {**body, "model": "base-model"})
    r = await _router(guarded_router, crashing, healthy)
    async with await r.post(COMPLETIONS, body) as resp:
        events = await read_sse(resp)
    assert resp.headers["x-caldera-pod"] == "default/a-crashing" and crashing.proc.wait(10) != 0
    assert _texts(events) == _texts(reference) and len(_texts(events)) == 12


@pytest.mark.slow
async def test_migrated_stream_reads_as_one_uninterrupted_response(engines, guarded_router):
    crashing, healthy = await _crash_pair(engines)
    r = await _router(guarded_router, crashing, healthy)
    async with await r.post(COMPLETIONS, {"model": "m", "prompt": PROMPT, "max_tokens": 10, "stream": True,
                                          "stream_options": {"include_usage": True}}) as resp:
        events = await read_sse(resp)
    objs = [orjson.loads(e) for e in events[:-1]]
    assert events[-1] == b"[DONE]" and events.count(b"[DONE]") == 1
    assert len({o["id"] for o in objs}) == 1 and len({o["created"] for o in objs}) == 1
    usage = objs[-1]["usage"]
    assert usage["completion_tokens"] == 10 and usage["prompt_tokens"] == len(PROMPT.split())
    assert r.router.guard.metrics.migrations.labels("default/m", "resumed")._value.get() == 1


@pytest.mark.slow
async def test_chat_stream_broken_mid_way_continues_with_the_unbroken_tokens(engines, guarded_router):
    crashing, healthy = await _crash_pair(engines, "--crash-mode", "abort")
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 9, "stream": True}
    reference = await _direct(healthy.url, CHAT_COMPLETIONS, {**body, "model": "base-model"})
    r = await _router(guarded_router, crashing, healthy)
    async with await r.post(CHAT_COMPLETIONS, body) as resp:
        events = await read_sse(resp)
    assert _texts(events, chat=True) == _texts(reference, chat=True)
    roles = [e for e in events[:-1] if "role" in orjson.loads(e)["choices"][0]["delta"]]
    assert len(roles) == 1


@pytest.mark.slow
async def test_token_id_prompt_stream_continues_with_the_unbroken_tokens(engines, guarded_router):
    crashing, healthy = await _crash_pair(engines)
    body = {"model": "m", "prompt": [11, 22, 33, 44, 55], "max_tokens": 10, "stream": True}
    reference = await _direct(healthy.url, COMPLETIONS, {**body, "model": "base-model"})
    r = await _router(guarded_router, crashing, healthy)
    async with await r.post(COMPLETIONS, body) as resp:
        events = await read_sse(resp)
    assert _texts(events) == _texts(reference) and len(_texts(events)) == 10


@pytest.mark.slow
async def test_stream_that_cannot_move_ends_with_an_error_event(engines, guarded_router):
    crashing = await engines.start("a-crashing", "--crash-after-tokens", "3", labels={"app": "m"})
    r = await _router(guarded_router, crashing)
    async with await r.post(COMPLETIONS, {"model": "m", "prompt": PROMPT, "max_tokens": 8, "stream": True}) as resp:
        events = await read_sse(resp)
    assert orjson.loads(events[-2])["error"]["code"] == "stream_broken" and events[-1] == b"[DONE]"


def _event(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _chunk(text, i="cmpl-1", finish=None):
    return _event({"id": i, "created": 7, "choices": [{"index": 0, "text": text, "finish_reason": finish}]})


def test_relay_forwards_only_complete_events():
    relay = StreamRelay(chat=False)
    whole = _chunk(" a")
    assert relay.feed(whole[:10]) == b"" and relay.feed(whole[10:]) == whole
    assert relay.text == " a" and relay.tokens == 1


def test_relay_rewrites_a_resumed_attempt_to_the_first_id_and_whole_usage():
    relay = StreamRelay(chat=False)
    relay.feed(_chunk(" a") + _chunk(" b"))
    relay.next_attempt()
    out = relay.feed(_chunk(" c", i="cmpl-9") + _event({"id": "cmpl-9", "created": 9, "choices": [],
                                                         "usage": {"prompt_tokens": 5, "completion_tokens": 1}}))
    first, usage = (orjson.loads(e[6:]) for e in out.split(b"\n\n")[:-1])
    assert first["id"] == "cmpl-1" and first["created"] == 7
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 3}


def test_resume_body_appends_generated_text_and_lowers_max_tokens():
    req = parse_request(COMPLETIONS, orjson.dumps({"model": "m", "prompt": "hi there", "max_tokens": 5}))
    relay = StreamRelay(chat=False)
    relay.feed(_chunk(" a") + _chunk(" b"))
    assert orjson.loads(resume_body(req, "up", relay)) == {"model": "up", "prompt": "hi there a b", "max_tokens": 3}


def test_resume_body_for_chat_continues_the_assistant_message():
    req = parse_request(CHAT_COMPLETIONS, orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "q"}]}))
    relay = StreamRelay(chat=True)
    relay.feed(_event({"id": "c", "created": 1, "choices": [{"index": 0, "delta": {"content": " x"}}]}))
    body = orjson.loads(resume_body(req, "m", relay))
    assert body["messages"][-1] == {"role": "assistant", "content": " x"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_token_id_prompts_resume_with_the_generated_ids():
    req = parse_request(COMPLETIONS, orjson.dumps({"model": "m", "prompt": [1, 2, 3], "max_tokens": 4}))
    relay = StreamRelay(chat=False)
    relay.feed(_chunk(" a"))
    with pytest.raises(NotMigratable, match="token ids"):
        resume_body(req, "m", relay)
    assert orjson.loads(resume_body(req, "m", relay, [42])) == {"model": "m", "prompt": [1, 2, 3, 42],
                                                                "max_tokens": 3}


def test_several_prompts_in_one_request_are_not_migrated():
    req = parse_request(COMPLETIONS, orjson.dumps({"model": "m", "prompt": ["a", "b"]}))
    with pytest.raises(NotMigratable, match="single text or token-id prompt"):
        resume_body(req, "m", StreamRelay(chat=False))


def test_a_stream_that_already_finished_only_gets_its_done_marker():
    relay = StreamRelay(chat=False)
    relay.feed(_chunk(" a", finish="length"))
    assert closing_events(relay, "x") == b"data: [DONE]\n\n"


def test_relay_keeps_long_generations_as_few_strings():
    relay = StreamRelay(chat=False)
    for i in range(1000):
        relay.feed(_chunk(f" w{i}"))
    assert relay.tokens == 1000 and relay.text == "".join(f" w{i}" for i in range(1000))
    assert len(relay._parts) < 256
