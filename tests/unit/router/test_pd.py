import random

import orjson

from router.endpoints import Endpoint
from router.pd import connector_of, decode_extra_from_prefill, plan, same_group, skip_prefill
from router.request import COMPLETIONS, parse_request
from router.routing import compile_server


def req(**extra):
    return parse_request(COMPLETIONS, orjson.dumps({"model": "m", "prompt": "hi", "stream": True,
                                                    "stream_options": {"include_usage": True}, **extra}))


def srv(engine="vLLM", connector=None):
    spec = {"inferenceEngine": engine}
    if connector:
        spec["kvConnector"] = {"type": connector}
    return compile_server({"metadata": {"name": "s"}, "spec": spec})


PREFILL = Endpoint(name="p", address="127.0.0.2:8000", server="s", role="prefill", pd_group="g1",
                   bootstrap_port=9000)


def test_connector_defaults_by_engine():
    assert connector_of(srv("vLLM")) == "http"
    assert connector_of(srv("SGLang")) == "sglang"
    assert connector_of(srv("vLLM", "nixl")) == "nixl"
    assert connector_of(srv("vLLM", "mooncake")) == "nixl"
    assert connector_of(srv("vLLM", "lmcache")) == "http"


def test_nixl_prefill_asks_for_remote_decode_with_one_token():
    body = orjson.loads(plan(req(), "real", "nixl", PREFILL, 8998).prefill_body)
    assert body["kv_transfer_params"]["do_remote_decode"] is True
    assert (body["max_tokens"], body["stream"], body["model"]) == (1, False, "real")
    assert "stream_options" not in body


def test_http_prefill_is_a_one_token_request():
    body = orjson.loads(plan(req(max_completion_tokens=50), "m", "http", PREFILL, 8998).prefill_body)
    assert (body["max_tokens"], body["max_completion_tokens"], body["stream"]) == (1, 1, False)
    assert "kv_transfer_params" not in body


def test_sglang_sends_bootstrap_info_to_both_sides():
    p = plan(req(), "m", "sglang", PREFILL, 8998, random.Random(1))
    body = orjson.loads(p.prefill_body)
    assert body["bootstrap_host"] == "127.0.0.2" and body["bootstrap_port"] == 9000
    assert p.decode_extra["bootstrap_room"] == body["bootstrap_room"]
    assert body["stream"] is True  # prefill runs the original request concurrently


def test_decode_gets_the_prefill_kv_transfer_params():
    params = {"remote_engine_id": "e", "remote_block_ids": [1, 2], "do_remote_prefill": True}
    assert decode_extra_from_prefill("nixl", {"kv_transfer_params": params}) == {"kv_transfer_params": params}
    assert decode_extra_from_prefill("http", {"kv_transfer_params": params}) == {}


def test_prefill_is_skipped_only_below_the_threshold():
    assert skip_prefill(1000, 0.99, threshold_tokens=16) is True
    assert skip_prefill(1000, 0.5, threshold_tokens=16) is False
    assert skip_prefill(10, 0.0, threshold_tokens=0) is False


def test_prefill_pool_is_limited_to_the_decode_pods_group():
    other = Endpoint(name="q", address="127.0.0.3:8000", server="s", role="prefill", pd_group="g2")
    decode = Endpoint(name="d", address="127.0.0.4:8000", server="s", role="decode", pd_group="g1")
    assert same_group([PREFILL, other], decode) == [PREFILL]
