"""The OpenAI-compatible API driven by the official openai client and raw HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from enginesim.blocks import hash_blocks
from enginesim.generation import continuation
from enginesim.testing import SimProcess as Sim
from enginesim.testing import wait_until
from enginesim.tokenizer import apply_chat_template, get_tokenizer

TOK = get_tokenizer("whitespace")


@pytest.fixture
def client(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0)


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def test_models_lists_every_served_name(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == ["sim-model", "alias-model"]


def test_completion_returns_max_tokens_and_usage(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="sim-model", prompt="once upon a time", max_tokens=7)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 7)
    assert len(TOK.encode(resp.choices[0].text)) == 7


def test_completion_text_is_the_deterministic_continuation(client: openai.OpenAI) -> None:
    prompt = "the deterministic continuation"
    resp = client.completions.create(model="sim-model", prompt=prompt, max_tokens=5)
    assert resp.choices[0].text == TOK.decode(continuation(TOK, 0, TOK.encode(prompt), 5))


def test_alias_model_name_is_served(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="alias-model", prompt="x", max_tokens=1)
    assert resp.model == "alias-model"


def test_chat_completion_non_streaming(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="sim-model", messages=[{"role": "user", "content": "hello"}],
                                          max_tokens=4)
    assert resp.choices[0].message.role == "assistant"
    assert len(TOK.encode(resp.choices[0].message.content or "")) == 4
    expected_prompt = TOK.encode(apply_chat_template([{"role": "user", "content": "hello"}]))
    assert resp.usage is not None and resp.usage.prompt_tokens == len(expected_prompt)


def test_chat_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": "stream please"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(TOK.encode(content)) == 6
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_streamed_and_non_streamed_text_agree(client: openai.OpenAI) -> None:
    prompt = "agreement between modes"
    full = client.completions.create(model="sim-model", prompt=prompt, max_tokens=8).choices[0].text
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(model="sim-model", prompt=prompt, max_tokens=8, stream=True)
                       if c.choices)
    assert streamed == full


def test_repeated_prefix_reports_cached_tokens(client: openai.OpenAI) -> None:
    prefix = words(64, "shared")  # 64 tokens = 4 full blocks of 16
    first = client.completions.create(model="sim-model", prompt=prefix + " first question", max_tokens=2)
    second = client.completions.create(model="sim-model", prompt=prefix + " second question", max_tokens=2)
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details is not None and second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == 64


def test_resumed_request_continues_identically(client: openai.OpenAI) -> None:
    prompt = "resume me from the middle"
    whole = client.completions.create(model="sim-model", prompt=prompt, max_tokens=10).choices[0].text
    head = client.completions.create(model="sim-model", prompt=prompt, max_tokens=4).choices[0].text
    tail = client.completions.create(model="sim-model", prompt=prompt + head, max_tokens=6).choices[0].text
    assert head + tail == whole


def test_token_id_prompt_is_accepted(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="sim-model", prompt=[1, 2, 3], max_tokens=2)
    assert resp.usage is not None and resp.usage.prompt_tokens == 3


def test_stop_string_ends_generation(client: openai.OpenAI) -> None:
    prompt = "stop string check"
    full = client.completions.create(model="sim-model", prompt=prompt, max_tokens=6).choices[0].text
    stop_word = full.split()[2]
    resp = client.completions.create(model="sim-model", prompt=prompt, max_tokens=6, stop=[stop_word])
    assert resp.choices[0].finish_reason == "stop"


def test_tokenize_matches_the_importable_tokenizer(sim: Sim) -> None:
    body = httpx.post(sim.url + "/tokenize", json={"model": "sim-model", "prompt": "alpha beta gamma"}).json()
    assert body["tokens"] == TOK.encode("alpha beta gamma")
    assert body["count"] == 3


def test_tokenize_chat_messages_uses_the_chat_template(sim: Sim) -> None:
    messages = [{"role": "user", "content": "alpha"}]
    body = httpx.post(sim.url + "/tokenize", json={"messages": messages}).json()
    assert body["tokens"] == TOK.encode(apply_chat_template(messages))


def test_detokenize_inverts_generated_ids(sim: Sim) -> None:
    body = httpx.post(sim.url + "/detokenize", json={"tokens": [1, 2, 3]}).json()
    assert TOK.encode(body["prompt"]) == [1, 2, 3]


def test_router_side_block_hashes_match_engine_cache(sim: Sim, client: openai.OpenAI) -> None:
    prompt = words(48, "hashcheck")
    ids = TOK.encode(prompt)
    assert len(hash_blocks(ids, 16)) == 3
    client.completions.create(model="sim-model", prompt=prompt, max_tokens=1)
    again = client.completions.create(model="sim-model", prompt=prompt + " more", max_tokens=1)
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    assert again.usage.prompt_tokens_details.cached_tokens == 48


def test_health_and_version(sim: Sim) -> None:
    assert httpx.get(sim.url + "/health").status_code == 200
    assert "version" in httpx.get(sim.url + "/version").json()


def test_client_disconnect_aborts_the_request(sim: Sim) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.url + "/v1/completions", json={"prompt": "abandoned", "max_tokens": 2000}, timeout=0.3)

    def aborted() -> bool:
        text = httpx.get(sim.url + "/metrics").text
        return 'vllm:request_success_total{engine="0",finished_reason="abort",model_name="sim-model"} 1.0' in text

    wait_until(aborted, timeout=5)


def test_completion_resumed_on_another_engine_continues_identically(sim: Sim, start_sim: Any) -> None:
    other = start_sim("--max-model-len", "2048")
    prompt = "migrate me between engines"
    body = {"model": "sim-model", "prompt": prompt}
    whole = httpx.post(sim.url + "/v1/completions", json={**body, "max_tokens": 9}).json()["choices"][0]["text"]
    head = httpx.post(sim.url + "/v1/completions", json={**body, "max_tokens": 3}).json()["choices"][0]["text"]
    tail = httpx.post(other.url + "/v1/completions",
                      json={**body, "prompt": prompt + head, "max_tokens": 6}).json()["choices"][0]["text"]
    assert head + tail == whole


def test_chat_resumed_with_continue_final_message_continues_identically(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "resume this chat"}]
    whole = client.chat.completions.create(model="sim-model", messages=messages, max_tokens=8)
    head = client.chat.completions.create(model="sim-model", messages=messages, max_tokens=3)
    head_text = head.choices[0].message.content or ""
    tail = client.chat.completions.create(
        model="sim-model", messages=[*messages, {"role": "assistant", "content": head_text}], max_tokens=5,
        extra_body={"continue_final_message": True, "add_generation_prompt": False})
    assert head_text + (tail.choices[0].message.content or "") == whole.choices[0].message.content
