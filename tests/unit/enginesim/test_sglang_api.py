"""SGLang mode: the native /generate API and SGLang's server endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from enginesim.generation import continuation
from enginesim.testing import SimProcess, launch_sim
from enginesim.tokenizer import get_tokenizer

TOK = get_tokenizer("whitespace")


@pytest.fixture(scope="module")
def sglang(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    s = launch_sim(tmp_path_factory.mktemp("sglang"), "--mode", "sglang", "--model-path", "sg-model",
                   "--time-scale", "20", "--page-size", "16", "--num-gpu-blocks", "512")
    yield s
    s.stop()


def test_generate_returns_text_and_meta_info(sglang: SimProcess) -> None:
    body = httpx.post(sglang.url + "/generate", json={"text": "hello sglang",
                                                      "sampling_params": {"max_new_tokens": 5}}).json()
    assert body["text"] == TOK.decode(continuation(TOK, 0, TOK.encode("hello sglang"), 5))
    meta = body["meta_info"]
    assert (meta["prompt_tokens"], meta["completion_tokens"], meta["cached_tokens"]) == (2, 5, 0)
    assert meta["finish_reason"] == {"type": "length", "length": 5}


def test_generate_accepts_input_ids(sglang: SimProcess) -> None:
    body = httpx.post(sglang.url + "/generate", json={"input_ids": [5, 6, 7],
                                                      "sampling_params": {"max_new_tokens": 2}}).json()
    assert body["output_ids"] == continuation(TOK, 0, [5, 6, 7], 2)


def test_generate_streams_cumulative_text(sglang: SimProcess) -> None:
    events = []
    with httpx.stream("POST", sglang.url + "/generate", json={
            "text": "stream it", "stream": True, "sampling_params": {"max_new_tokens": 3}}) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    texts = [e["text"] for e in events]
    assert len(texts) == 3
    assert all(texts[i + 1].startswith(texts[i]) for i in range(2))


def test_generate_without_text_or_ids_is_400(sglang: SimProcess) -> None:
    resp = httpx.post(sglang.url + "/generate", json={"sampling_params": {}})
    assert resp.status_code == 400


def test_health_generate_runs_a_token(sglang: SimProcess) -> None:
    assert httpx.get(sglang.url + "/health_generate").status_code == 200


def test_model_and_server_info(sglang: SimProcess) -> None:
    assert httpx.get(sglang.url + "/get_model_info").json()["model_path"] == "sg-model"
    info = httpx.get(sglang.url + "/get_server_info").json()
    assert (info["page_size"], info["max_total_num_tokens"]) == (16, 512 * 16)


def test_openai_endpoints_are_served_in_sglang_mode(sglang: SimProcess) -> None:
    resp = httpx.post(sglang.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2})
    assert resp.status_code == 200
    assert httpx.get(sglang.url + "/v1/models").json()["data"][0]["owned_by"] == "sglang"


def test_flush_cache_forgets_cached_prefixes(sglang: SimProcess) -> None:
    prompt = " ".join(f"flush{i}" for i in range(40))
    httpx.post(sglang.url + "/generate", json={"text": prompt, "sampling_params": {"max_new_tokens": 1}})
    assert httpx.post(sglang.url + "/flush_cache").status_code == 200
    again = httpx.post(sglang.url + "/generate", json={"text": prompt, "sampling_params": {"max_new_tokens": 1}})
    assert again.json()["meta_info"]["cached_tokens"] == 0
