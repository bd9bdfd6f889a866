import random

import orjson
import pytest

from router.config import BUILTIN_PROFILES, build_profile
from router.cost_model import CostModelScorer, pod_cost
from router.endpoints import Endpoint, EngineMetrics
from router.filters import BusyFilter, HealthyFilter, ImbalanceFilter
from router.pickers import MaxScorePicker, RoundRobinPicker, SoftmaxPicker, WeightedRandomPicker
from router.request import COMPLETIONS, parse_request
from router.scheduling import SchedulingContext, Signals
from router.scorers.inflight import InflightScorer
from router.scorers.kv_events import KVEventsScorer
from router.scorers.kv_usage import KVUsageScorer
from router.scorers.latency import LatencyScorer
from router.scorers.lora_affinity import LoraAffinityScorer
from router.scorers.prefix_cache import PrefixCacheScorer
from router.scorers.queue import QueueScorer
from router.scorers.running import RunningScorer


def ctx(prompt="x " * 400, lora=None, signals=None, tokens=None):
    body = {"model": "m", "prompt": tokens if tokens is not None else prompt, "max_tokens": 10}
    req = parse_request(COMPLETIONS, orjson.dumps(body))
    return SchedulingContext(request=req, model="m", lora=lora, signals=signals or Signals())


def ep(name, **metrics):
    return Endpoint(name=name, address=f"127.0.0.1:{8000 + len(name)}", server="s",
                    metrics=EngineMetrics(**metrics))


def test_queue_scorer_prefers_the_shortest_queue():
    assert QueueScorer().score(ctx(), [ep("a", waiting=0), ep("b", waiting=4), ep("c", waiting=2)]) == [1, 0, 0.5]


def test_queue_scorer_gives_all_ones_when_equal():
    assert QueueScorer().score(ctx(), [ep("a", waiting=3), ep("b", waiting=3)]) == [1.0, 1.0]


def test_running_scorer_prefers_fewer_running():
    assert RunningScorer().score(ctx(), [ep("a", running=8), ep("b", running=0)]) == [0.0, 1.0]


def test_kv_usage_scorer_is_headroom():
    assert KVUsageScorer().score(ctx(), [ep("a", kv_usage=0.25)]) == [0.75]


def test_inflight_scorer_uses_the_routers_own_counts():
    a, b = ep("a"), ep("b")
    a.begin(100, 100)
    a.begin(100, 100)
    scores = InflightScorer().score(ctx(), [a, b])
    assert scores[1] == 1.0 and 0 < scores[0] < scores[1]


def test_latency_scorer_gives_unknown_pods_half():
    s = LatencyScorer().score(ctx(), [ep("a", ttft_s=0.1, tpot_s=0.01), ep("b", ttft_s=0.5, tpot_s=0.05), ep("c")])
    assert s == [1.0, 0.0, 0.5]


def test_lora_affinity_tiers():
    loaded, free, waiting, full = (ep("a", running_loras=frozenset({"sql"}), max_lora=2),
                                   ep("b", running_loras=frozenset({"x"}), max_lora=2),
                                   ep("c", running_loras=frozenset({"x"}), waiting_loras=frozenset({"sql"}),
                                      max_lora=1),
                                   ep("d", running_loras=frozenset({"x"}), max_lora=1))
    assert LoraAffinityScorer().score(ctx(lora="sql"), [loaded, free, waiting, full]) == [1.0, 0.8, 0.6, 0.0]


def test_prefix_cache_scorer_is_the_matched_fraction():
    sig = Signals()
    c = ctx(signals=sig)
    hashes = c.approx_hashes
    sig.approx.record("a", hashes[: len(hashes) // 2])
    sig.approx.record("b", hashes)
    assert PrefixCacheScorer().score(ctx(signals=sig), [ep("a"), ep("b"), ep("c")]) == pytest.approx(
        [(len(hashes) // 2) / len(hashes), 1.0, 0.0])


def test_kv_events_scorer_falls_back_to_approximate_without_tokens():
    sig = Signals()
    sig.approx.record("a", ctx(signals=sig).approx_hashes)
    assert KVEventsScorer().score(ctx(signals=sig), [ep("a"), ep("b")]) == [1.0, 0.0]


def test_kv_events_scorer_uses_the_event_index_for_token_prompts():
    from router.kvindex.events import BlockStored

    sig = Signals()
    tokens = list(range(32))
    sig.precise.apply("b", BlockStored(block_hashes=tuple(range(1, 9)), parent_block_hash=None,
                                       token_ids=tuple(tokens), block_size=4))
    assert KVEventsScorer().score(ctx(signals=sig, tokens=tokens), [ep("a"), ep("b")]) == [0.0, 1.0]


def test_pod_cost_is_overlap_weight_times_prefill_plus_decode_blocks():
    e = ep("a")
    e.inflight_tokens = 160  # 10 active blocks
    # 128 prompt tokens, half cached -> 4 prefill blocks; decode = 10 active + 4 new blocks
    assert pod_cost(128, 0.5, e, 16, overlap_weight=2.0) == pytest.approx(2 * 4 + 10 + 4)


def test_cost_model_prefers_cache_until_load_outweighs_it():
    sig = Signals()
    c = ctx(signals=sig)
    sig.approx.record("cached", c.approx_hashes)
    cached, idle = ep("cached"), ep("idle")
    first = CostModelScorer().score(ctx(signals=sig), [cached, idle])
    assert first[0] == 1.0 and first[1] < 1.0
    cached.inflight_tokens = 100_000
    second = CostModelScorer().score(ctx(signals=sig), [cached, idle])
    assert second[1] == 1.0 and second[0] < 0.1


def test_cost_model_barely_separates_pods_that_differ_by_a_block():
    a, b = ep("a"), ep("b")
    b.inflight_tokens = 16
    scores = CostModelScorer().score(ctx(prompt="hi"), [a, b])
    assert scores[0] == 1.0 and scores[1] > 0.95


def test_max_score_picker_breaks_ties_randomly():
    picker = MaxScorePicker(rng=random.Random(3))
    eps = [ep("a"), ep("b"), ep("c")]
    firsts = {picker.pick(ctx(), eps, [1.0, 1.0, 0.5])[0].name for _ in range(100)}
    assert firsts == {"a", "b"}


def test_max_score_picker_orders_all_candidates_for_fallback():
    order = MaxScorePicker().pick(ctx(), [ep("a"), ep("b"), ep("c")], [0.1, 0.9, 0.5])
    assert [e.name for e in order] == ["b", "c", "a"]


def test_weighted_random_picker_follows_the_weights():
    picker = WeightedRandomPicker(rng=random.Random(5))
    eps = [ep("a"), ep("b")]
    n = sum(picker.pick(ctx(), eps, [3.0, 1.0])[0].name == "a" for _ in range(4000))
    assert abs(n / 4000 - 0.75) < 0.03


def test_softmax_at_zero_temperature_is_max_score():
    picker = SoftmaxPicker(temperature=0.0)
    assert picker.pick(ctx(), [ep("a"), ep("b")], [0.2, 0.8])[0].name == "b"


def test_round_robin_cycles():
    picker = RoundRobinPicker()
    eps = [ep("a"), ep("b"), ep("c")]
    assert [picker.pick(ctx(), eps, [0, 0, 0])[0].name for _ in range(4)] == ["a", "b", "c", "a"]


def test_busy_filter_drops_saturated_pods_but_fails_open():
    import time

    now = time.time()
    busy, fine = ep("busy", waiting=50, scraped_at=now), ep("fine", scraped_at=now)
    assert BusyFilter().filter(ctx(), [busy, fine]) == [fine]
    assert BusyFilter().filter(ctx(), [busy]) == [busy]


def test_busy_filter_ignores_stale_metrics():
    stale = ep("stale", waiting=50, scraped_at=0.0)
    assert BusyFilter().filter(ctx(), [stale, ep("x", scraped_at=0.0)]) == [stale, ep("x", scraped_at=0.0)]


def test_healthy_filter_drops_failed_pods():
    sick, fine = ep("sick"), ep("fine")
    sick.healthy = False
    assert HealthyFilter().filter(ctx(), [sick, fine]) == [fine]


def loaded(name, requests, **metrics):
    e = ep(name, **metrics)
    for _ in range(requests):
        e.begin(100, 0)
    return e


def test_imbalance_filter_drops_a_pod_far_ahead_of_the_least_loaded():
    idle, busy, hot = loaded("idle", 2), loaded("busy", 10), loaded("hot", 40)
    assert ImbalanceFilter(abs_threshold=16, rel_threshold=1.5).filter(ctx(), [idle, busy, hot]) == [idle, busy]


def test_imbalance_filter_needs_both_the_absolute_and_the_relative_lead():
    low, high = loaded("low", 100), loaded("high", 140)  # 40 ahead, but only 1.4 times
    assert ImbalanceFilter(abs_threshold=16, rel_threshold=1.5).filter(ctx(), [low, high]) == [low, high]
    few, more = loaded("few", 1), loaded("more", 10)  # 10 times, but only 9 ahead
    assert ImbalanceFilter(abs_threshold=16, rel_threshold=1.5).filter(ctx(), [few, more]) == [few, more]


def test_default_profile_keeps_a_cached_pod_a_few_requests_ahead():
    sig = Signals()
    sig.approx.record("b", ctx(signals=sig).approx_hashes)
    profile = build_profile("default", BUILTIN_PROFILES["default"], random.Random(0))
    pods = [loaded("a", 4, waiting=2, kv_usage=0.5), loaded("b", 12, waiting=6, kv_usage=0.9),
            loaded("c", 6, waiting=3, kv_usage=0.6)]
    decision = profile.run(ctx(signals=sig), pods)
    assert decision is not None and decision.chosen.name == "b"


def test_default_profile_prefers_the_cached_pod_when_load_is_equal():
    sig = Signals()
    sig.approx.record("b", ctx(signals=sig).approx_hashes)
    profile = build_profile("default", BUILTIN_PROFILES["default"], random.Random(0))
    decision = profile.run(ctx(signals=sig), [ep("a"), ep("b"), ep("c")])
    assert decision is not None and decision.chosen.name == "b"
    assert decision.scores["b"]["kv-events"] == 1.0


def test_default_profile_moves_off_an_overloaded_cached_pod():
    sig = Signals()
    sig.approx.record("b", ctx(signals=sig).approx_hashes)
    hot = ep("b", waiting=30, kv_usage=0.9)
    for _ in range(40):
        hot.begin(2000, 0)
    profile = build_profile("default", BUILTIN_PROFILES["default"], random.Random(0))
    decision = profile.run(ctx(signals=sig), [ep("a"), hot])
    assert decision is not None and decision.chosen.name == "a"
