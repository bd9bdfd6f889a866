"""Prefill/decode disaggregation: vLLM's NIXL kv_transfer_params and SGLang's bootstrap rooms."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from enginesim.testing import SimProcess, free_port

Start = Callable[..., SimProcess]
NIXL = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"})
PROMPT = " ".join(f"pd{i}" for i in range(100))


def metric(sim: SimProcess, name: str) -> float:
    text = httpx.get(sim.url + "/metrics").text
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exposed"
    return float(match.group(1))


def held(sim: SimProcess) -> int:
    return int(httpx.get(sim.url + "/debug/stats").json()["held_prefills"])


def prefill(sim: SimProcess) -> dict[str, object]:
    resp = httpx.post(sim.url + "/v1/completions", json={
        "prompt": PROMPT, "max_tokens": 1,
        "kv_transfer_params": {"do_remote_decode": True, "do_remote_prefill": False}})
    assert resp.status_code == 200, resp.text
    params = resp.json()["kv_transfer_params"]
    assert isinstance(params, dict)
    return params


def test_nixl_prefill_returns_remote_prefill_params(start_sim: Start) -> None:
    p = start_sim("--kv-transfer-config", NIXL)
    params = prefill(p)
    assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
    assert params["remote_host"] == "127.0.0.1" and params["remote_port"] == p.port
    assert isinstance(params["remote_engine_id"], str) and params["remote_block_ids"]
    assert held(p) == 1


def test_nixl_decode_pulls_the_blocks_and_skips_prefill(start_sim: Start) -> None:
    p = start_sim("--kv-transfer-config", NIXL)
    d = start_sim("--kv-transfer-config", NIXL)
    params = prefill(p)
    resp = httpx.post(d.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 5,
                                                       "kv_transfer_params": params})
    assert resp.status_code == 200
    assert held(p) == 0
    assert metric(d, "enginesim:remote_prefill_requests_total") == 1
    assert metric(d, "enginesim:kv_transfer_received_tokens_total") == 100


def test_nixl_decode_output_equals_an_aggregated_run(start_sim: Start) -> None:
    p = start_sim("--kv-transfer-config", NIXL)
    d = start_sim("--kv-transfer-config", NIXL)
    params = prefill(p)
    disagg = httpx.post(d.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 5,
                                                         "kv_transfer_params": params}).json()
    whole = httpx.post(p.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 5}).json()
    assert disagg["choices"][0]["text"] == whole["choices"][0]["text"]


def test_nixl_decode_recomputes_when_the_prefill_is_gone(start_sim: Start) -> None:
    d = start_sim("--kv-transfer-config", NIXL)
    stale = {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": "gone",
             "remote_request_id": "cmpl-0", "remote_block_ids": [1], "remote_host": "127.0.0.1",
             "remote_port": free_port(), "tp_size": 1}
    resp = httpx.post(d.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2,
                                                       "kv_transfer_params": stale})
    assert resp.status_code == 200
    assert metric(d, "enginesim:kv_transfer_failures_total") == 1
    assert metric(d, "enginesim:remote_prefill_requests_total") == 0


def test_kv_transfer_params_are_ignored_without_a_connector(start_sim: Start) -> None:
    sim = start_sim()
    resp = httpx.post(sim.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 1,
                                                         "kv_transfer_params": {"do_remote_decode": True}})
    assert resp.json()["kv_transfer_params"] is None


def sglang_pair(start_sim: Start, *extra: str) -> tuple[SimProcess, SimProcess, int]:
    bootstrap = free_port()
    p = start_sim("--mode", "sglang", "--disaggregation-mode", "prefill",
                  "--disaggregation-bootstrap-port", str(bootstrap), *extra)
    d = start_sim("--mode", "sglang", "--disaggregation-mode", "decode", *extra)
    return p, d, bootstrap


def test_sglang_prefill_and_decode_sent_together(start_sim: Start) -> None:
    p, d, bootstrap = sglang_pair(start_sim)
    body = {"text": PROMPT, "sampling_params": {"max_new_tokens": 4}, "bootstrap_host": "127.0.0.1",
            "bootstrap_port": bootstrap, "bootstrap_room": 4242}
    with ThreadPoolExecutor(2) as pool:
        dec = pool.submit(httpx.post, d.url + "/generate", json=body, timeout=30)
        pre = pool.submit(httpx.post, p.url + "/generate", json=body, timeout=30)
        assert pre.result().status_code == 200
        decoded = dec.result()
    assert decoded.status_code == 200
    assert decoded.json()["meta_info"]["completion_tokens"] == 4
    assert metric(d, "enginesim:kv_transfer_received_tokens_total") == 100


def test_sglang_decode_through_the_openai_endpoint(start_sim: Start) -> None:
    p, d, bootstrap = sglang_pair(start_sim)
    body = {"model": "sim-model", "prompt": PROMPT, "max_tokens": 3, "bootstrap_host": "127.0.0.1",
            "bootstrap_port": bootstrap, "bootstrap_room": 7}
    with ThreadPoolExecutor(2) as pool:
        dec = pool.submit(httpx.post, d.url + "/v1/completions", json=body, timeout=30)
        pool.submit(httpx.post, p.url + "/v1/completions", json=body, timeout=30).result()
        assert dec.result().status_code == 200


def test_sglang_decode_fails_when_the_room_never_fills(start_sim: Start) -> None:
    _, d, bootstrap = sglang_pair(start_sim, "--kv-transfer-timeout", "10")
    body = {"text": PROMPT, "bootstrap_host": "127.0.0.1", "bootstrap_port": bootstrap, "bootstrap_room": 99}
    resp = httpx.post(d.url + "/generate", json=body, timeout=30)
    assert resp.status_code == 503
    assert "bootstrap room 99" in resp.json()["error"]["message"]


def test_sglang_decode_fails_fast_when_its_prefill_fails(start_sim: Start) -> None:
    bootstrap = free_port()
    p = start_sim("--mode", "sglang", "--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port",
                  str(bootstrap), "--failure-rate", "1", "--failure-types", "server_error")
    d = start_sim("--mode", "sglang", "--disaggregation-mode", "decode", "--kv-transfer-timeout", "6000")
    body = {"text": PROMPT, "bootstrap_host": "127.0.0.1", "bootstrap_port": bootstrap, "bootstrap_room": 5}
    with ThreadPoolExecutor(2) as pool:
        dec = pool.submit(httpx.post, d.url + "/generate", json=body, timeout=60)
        assert pool.submit(httpx.post, p.url + "/generate", json=body, timeout=60).result().status_code == 500
        resp = dec.result()
    assert resp.status_code == 503
    assert "prefill of room 5 failed" in resp.json()["error"]["message"]
