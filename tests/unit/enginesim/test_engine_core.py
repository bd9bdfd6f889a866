"""The engine core in-process: continuous batching, queue bound, prefix reuse, preemption, LoRA limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from enginesim.clock import Clock
from enginesim.engine import Engine, EngineRequest, LoraAdapter, QueueFull, TokenOutput
from enginesim.latency import get_profile
from enginesim.tokenizer import get_tokenizer

TOK = get_tokenizer("whitespace")


def engine(**overrides: int) -> Engine:
    profile = get_profile("8b-h100").with_overrides(num_gpu_blocks=overrides.pop("blocks", 64), block_size=4,
                                                    max_num_seqs=overrides.pop("max_num_seqs", 2))
    return Engine(profile, TOK, Clock(1000.0), max_waiting_queue_length=overrides.pop("queue", 10),
                  max_loras=overrides.pop("max_loras", 1))


def request(rid: str, prompt: list[int], max_tokens: int = 5, lora: LoraAdapter | None = None) -> EngineRequest:
    return EngineRequest(rid, list(prompt), max_tokens, lora=lora)


async def drain(outputs: AsyncIterator[TokenOutput]) -> list[int]:
    return [o.token_id async for o in outputs]


async def test_running_never_exceeds_max_num_seqs() -> None:
    e = engine(max_num_seqs=2)
    peak = 0

    async def run(i: int) -> None:
        nonlocal peak
        async for _ in e.generate(request(f"r{i}", [i, i + 1], 20)):
            peak = max(peak, e.num_running)

    await asyncio.gather(*(run(i) for i in range(5)))
    assert peak == 2


async def test_extra_requests_wait_in_the_queue() -> None:
    e = engine(max_num_seqs=1)
    outs = [e.submit(request(f"r{i}", [i], 5)) for i in range(3)]
    assert (e.num_running, e.num_waiting) == (1, 2)
    await asyncio.gather(*(drain(o) for o in outs))
    assert (e.num_running, e.num_waiting) == (0, 0)


async def test_full_waiting_queue_refuses() -> None:
    e = engine(max_num_seqs=1, queue=1)
    outs = [e.submit(request("a", [1])), e.submit(request("b", [2]))]
    with pytest.raises(QueueFull):
        e.submit(request("c", [3]))
    await asyncio.gather(*(drain(o) for o in outs))


async def test_shared_prefix_is_served_from_cache() -> None:
    e = engine()
    first = request("a", [*list(range(12)), 100])
    await drain(e.generate(first))
    second = request("b", [*list(range(12)), 200])
    await drain(e.generate(second))
    assert (first.num_cached_tokens, second.num_cached_tokens) == (0, 12)


async def test_requests_submitted_together_compute_a_shared_prefix_once() -> None:
    e = engine(max_num_seqs=4)
    first, second = request("a", [*list(range(12)), 100]), request("b", [*list(range(12)), 200])
    await asyncio.gather(drain(e.generate(first)), drain(e.generate(second)))
    assert (first.num_cached_tokens, second.num_cached_tokens) == (0, 12)


async def test_no_request_is_admitted_while_queued_prefill_fills_the_step_budget() -> None:
    profile = get_profile("8b-h100").with_overrides(num_gpu_blocks=64, block_size=4, max_num_seqs=4,
                                                    max_num_batched_tokens=8)
    e = Engine(profile, TOK, Clock(1000.0))
    outs = [e.submit(request("long", list(range(20)), 2)), e.submit(request("next", [900, 901], 2))]
    assert (sorted(e.running), e.num_waiting) == (["long"], 1)
    await asyncio.gather(*(drain(o) for o in outs))
    assert (e.num_running, e.num_waiting) == (0, 0)


async def test_without_prefix_caching_nothing_is_reused() -> None:
    e = Engine(get_profile("8b-h100").with_overrides(num_gpu_blocks=64, block_size=4), TOK, Clock(1000.0),
               prefix_caching=False)
    await drain(e.generate(request("a", list(range(13)))))
    again = request("b", list(range(13)))
    await drain(e.generate(again))
    assert again.num_cached_tokens == 0 and e.blocks.num_cached == 0


async def test_fully_cached_prompt_still_recomputes_its_last_block() -> None:
    e = engine()
    await drain(e.generate(request("a", list(range(8)))))
    again = request("b", list(range(8)))
    await drain(e.generate(again))
    assert again.num_cached_tokens == 4


async def test_aborted_request_frees_its_blocks() -> None:
    e = engine()
    outputs = e.submit(request("a", list(range(10)), 50))
    await anext(outputs)
    await outputs.aclose()
    assert e.blocks.usage() == 0 and e.num_running == 0


async def test_kv_pressure_preempts_and_both_requests_still_finish() -> None:
    e = engine(blocks=6, max_num_seqs=2)
    a, b = request("a", [1, 2, 3], 12), request("b", [4, 5, 6], 12)
    ta, tb = await asyncio.gather(drain(e.generate(a)), drain(e.generate(b)))
    assert (len(ta), len(tb)) == (12, 12)
    assert a.preemptions + b.preemptions >= 1


async def test_preempted_request_output_is_unchanged() -> None:
    alone = engine(blocks=64)
    reference = await drain(alone.generate(request("a", [1, 2, 3], 12)))
    squeezed = engine(blocks=6, max_num_seqs=2)
    a, b = request("a", [1, 2, 3], 12), request("b", [4, 5, 6], 12)
    ta, _ = await asyncio.gather(drain(squeezed.generate(a)), drain(squeezed.generate(b)))
    assert ta == reference


async def test_request_larger_than_the_cache_is_rejected() -> None:
    e = engine(blocks=4)
    with pytest.raises(ValueError, match="KV blocks"):
        e.submit(request("a", list(range(40)), 10))


async def test_max_loras_holds_back_a_second_adapter() -> None:
    e = engine(max_num_seqs=4, max_loras=1)
    la, lb = LoraAdapter("a", "/a", 1), LoraAdapter("b", "/b", 2)
    outs = [e.submit(request("x", [1], 5, la)), e.submit(request("y", [2], 5, lb)),
            e.submit(request("z", [3], 5, la))]
    assert sorted(e.running) == ["x", "z"] and e.waiting_loras() == ["b"]
    await asyncio.gather(*(drain(o) for o in outs))


async def test_prefill_for_remote_decode_holds_its_blocks_until_released() -> None:
    e = engine()
    req = request("p", list(range(9)), 1)
    req.hold_blocks_after_finish = True
    await drain(e.generate(req))
    assert "p" in e.held and e.blocks.usage() > 0
    e.release_held("p")
    assert e.blocks.usage() == 0


async def test_draining_engine_refuses_new_requests() -> None:
    e = engine()
    e.draining = True
    with pytest.raises(Exception, match="shutting down"):
        e.submit(request("a", [1]))
