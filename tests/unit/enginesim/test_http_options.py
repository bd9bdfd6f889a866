"""Server options: API key, the bytes tokenizer, seeds."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from enginesim.testing import SimProcess
from enginesim.tokenizer import get_tokenizer

Start = Callable[..., SimProcess]


def test_api_key_is_required_when_set(start_sim: Start) -> None:
    sim = start_sim("--api-key", "secret")
    body = {"prompt": "x", "max_tokens": 1}
    assert httpx.post(sim.url + "/v1/completions", json=body).status_code == 401
    ok = httpx.post(sim.url + "/v1/completions", json=body, headers={"Authorization": "Bearer secret"})
    assert ok.status_code == 200


def test_health_needs_no_api_key(start_sim: Start) -> None:
    assert httpx.get(start_sim("--api-key", "secret").url + "/health").status_code == 200


def test_bytes_tokenizer_counts_bytes_and_generates_letters(start_sim: Start) -> None:
    sim = start_sim("--tokenizer", "bytes")
    body = httpx.post(sim.url + "/v1/completions", json={"prompt": "héllo", "max_tokens": 8}).json()
    assert body["usage"]["prompt_tokens"] == len("héllo".encode())
    text = body["choices"][0]["text"]
    assert get_tokenizer("bytes").encode(text) and set(text) <= set(" abcdefghijklmnopqrstuvwxyz")


def test_engine_seed_changes_the_output(start_sim: Start) -> None:
    a, b = start_sim("--seed", "1"), start_sim("--seed", "2")
    body = {"prompt": "same prompt", "max_tokens": 6}
    text_a = httpx.post(a.url + "/v1/completions", json=body).json()["choices"][0]["text"]
    text_b = httpx.post(b.url + "/v1/completions", json=body).json()["choices"][0]["text"]
    assert text_a != text_b


def test_request_seed_changes_the_output(start_sim: Start) -> None:
    sim = start_sim()
    texts = {httpx.post(sim.url + "/v1/completions", json={"prompt": "p", "max_tokens": 6, "seed": seed})
             .json()["choices"][0]["text"] for seed in (1, 2)}
    assert len(texts) == 2
