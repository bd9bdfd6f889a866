"""The latency model and deterministic generation (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enginesim.generation import TokenStream, continuation
from enginesim.latency import (
    get_profile,
    inter_token_time,
    jittered,
    load_factor,
    plan_step,
    prefill_time,
    transfer_time,
)
from enginesim.tokenizer import get_tokenizer

P8 = get_profile("8b-h100")
TOK = get_tokenizer("whitespace")


def test_8b_profile_has_the_published_figures() -> None:
    assert (P8.inter_token_latency, P8.prefill_overhead, P8.time_per_prefill_token, P8.max_num_seqs) == (
        0.012, 0.030, 0.00025, 16)


def test_70b_profile_has_the_published_figures() -> None:
    p = get_profile("70b-h100-tp8")
    assert (p.inter_token_latency, p.prefill_overhead, p.time_per_prefill_token, p.max_num_seqs) == (
        0.025, 0.080, 0.0005, 64)


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValueError, match="profile"):
        get_profile("tiny")


def test_load_factor_is_one_alone_and_the_profile_factor_when_full() -> None:
    assert load_factor(P8, 1) == 1.0
    assert load_factor(P8, 16) == 2.0
    assert load_factor(P8, 100) == 2.0


def test_inter_token_latency_grows_with_the_batch() -> None:
    assert inter_token_time(P8, 1) < inter_token_time(P8, 8) < inter_token_time(P8, 16)


def test_prefill_time_is_overhead_plus_uncached_tokens() -> None:
    assert prefill_time(P8, 1000) == pytest.approx(0.030 + 0.25)
    assert prefill_time(P8, 0) == pytest.approx(0.030)


def test_step_with_only_a_prefill_lasts_its_tokens() -> None:
    plan = plan_step(P8, running=1, decoding=0, prefill_left=[1000])
    assert plan.prefill_chunks == [1000]
    assert plan.duration == pytest.approx(1000 * P8.time_per_prefill_token)


def test_step_with_only_decodes_lasts_one_inter_token_interval() -> None:
    assert plan_step(P8, running=4, decoding=4, prefill_left=[]).duration == inter_token_time(P8, 4)


def test_prefill_in_a_decode_step_stretches_the_step() -> None:
    mixed = plan_step(P8, running=5, decoding=4, prefill_left=[2000])
    assert mixed.duration == pytest.approx(inter_token_time(P8, 5) + 2000 * P8.time_per_prefill_token)


def test_step_budget_chunks_long_prompts_fifo() -> None:
    plan = plan_step(P8.with_overrides(max_num_batched_tokens=1000), running=3, decoding=2, prefill_left=[700, 700])
    assert plan.prefill_chunks == [700, 298]


def test_transfer_time_is_latency_plus_tokens() -> None:
    assert transfer_time(P8, 1000) == pytest.approx(P8.kv_transfer_latency + 1000 * P8.kv_transfer_time_per_token)


def test_jitter_is_clamped_to_seventy_percent() -> None:
    assert jittered(0.010, 0.005, 10.0) == pytest.approx(0.017)
    assert jittered(0.010, 0.005, -10.0) == pytest.approx(0.003)
    assert jittered(0.010, 0.0, 3.0) == 0.010


def test_overrides_are_validated() -> None:
    with pytest.raises(ValueError, match="time_factor_under_load"):
        P8.with_overrides(time_factor_under_load=0.5)


def test_same_seed_and_context_give_the_same_tokens() -> None:
    assert continuation(TOK, 1, [1, 2, 3], 10) == continuation(TOK, 1, [1, 2, 3], 10)


def test_different_seeds_give_different_tokens() -> None:
    assert continuation(TOK, 1, [1, 2, 3], 10) != continuation(TOK, 2, [1, 2, 3], 10)


@given(st.lists(st.integers(0, 2**20), max_size=50), st.integers(1, 20), st.integers(0, 20), st.integers(0, 99))
def test_resuming_with_generated_tokens_continues_identically(prompt: list[int], n: int, k: int, seed: int) -> None:
    whole = continuation(TOK, seed, prompt, n + k)
    head = whole[:k]
    assert continuation(TOK, seed, prompt + head, n) == whole[k:]


def test_generated_tokens_are_in_the_bytes_generation_alphabet() -> None:
    tok = get_tokenizer("bytes")
    stream = TokenStream(tok, 0, [104, 105])
    text = tok.decode(stream.next_token() for _ in range(50))
    assert set(text) <= set(" abcdefghijklmnopqrstuvwxyz")
