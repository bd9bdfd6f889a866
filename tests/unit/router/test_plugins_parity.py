"""Plugins ported from llm-d, SGLang, vLLM router / production-stack and AIBrix: worked examples
from the reference formulas, and properties (scores in [0, 1], ties spread)."""

import random
from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import BUILTIN_PROFILES, RouterConfig, build_profile
from router.endpoints import Endpoint, EngineMetrics
from router.filters import LeastLoadedIfImbalancedFilter, PrefixCacheAffinityFilter
from router.harness import route, server
from router.pickers import ConsistentHashPicker, MaxScorePicker, PowerOfTwoPicker
from router.request import COMPLETIONS, parse_request
from router.scheduling import Profile, SchedulingContext, Signals, WeightedScorer
from router.scorers.active_request import ActiveRequestScorer
from router.scorers.cache_aware import CacheAwareScorer
from router.scorers.inflight import InflightScorer
from router.scorers.least_kv_cache import LeastGPUCacheScorer, LeastKVCacheScorer
from router.scorers.least_latency import LeastLatencyScorer, expected_latency_s
from router.scorers.least_utilization import LeastBusyTimeScorer, LeastUtilizationScorer
from router.scorers.load_aware import LoadAwareScorer
from router.scorers.no_hit_lru import NoHitLRUScorer, is_cold, note_routed
from router.scorers.throughput import ThroughputScorer
from router.scorers.token_load import TokenLoadScorer
from router.scrape import parse_metrics


def ctx(prompt="x " * 400, signals=None, headers=None, **body):
    raw = orjson.dumps({"model": "m", "prompt": prompt, "max_tokens": 10, **body})
    req = parse_request(COMPLETIONS, raw, headers or {})
    return SchedulingContext(request=req, model="m", lora=None, signals=signals or Signals())


def ep(name, inflight=0, inflight_tokens=0, prefill_tokens=0, **metrics):
    return Endpoint(name=name, address=f"127.0.0.1:{8000 + len(name)}", server="s",
                    metrics=EngineMetrics(**metrics), inflight_requests=inflight,
                    inflight_tokens=inflight_tokens, inflight_prefill_tokens=prefill_tokens)


def cached_on(signals, pod, fraction, prompt="x " * 400):
    """Record the leading `fraction` of the prompt's blocks as sent to `pod`."""
    hashes = ctx(prompt, signals).approx_hashes
    signals.approx.record(pod, hashes[: round(len(hashes) * fraction)])


# llm-d load-aware-scorer: q=0 -> 0.5, else 0.5*(1 - min(q, T)/T), T=128

def test_load_aware_scores_an_empty_queue_one_half():
    assert LoadAwareScorer().score(ctx(), [ep("a", waiting=0)]) == [0.5]


def test_load_aware_falls_linearly_with_the_queue():
    assert LoadAwareScorer().score(ctx(), [ep("a", waiting=32), ep("b", waiting=96)]) == [0.375, 0.125]


def test_load_aware_reaches_zero_at_the_threshold_and_stays_there():
    assert LoadAwareScorer().score(ctx(), [ep("a", waiting=128), ep("b", waiting=500)]) == [0.0, 0.0]


def test_load_aware_threshold_is_configurable():
    assert LoadAwareScorer(threshold=10).score(ctx(), [ep("a", waiting=5)]) == [0.25]


# llm-d active-request-scorer

def test_active_request_scales_busy_pods_against_the_busiest():
    assert ActiveRequestScorer().score(ctx(), [ep("a", 0), ep("b", 2), ep("c", 4)]) == [1.0, 0.5, 0.0]


def test_active_request_idle_threshold_and_max_busy_score():
    s = ActiveRequestScorer(idle_threshold=2, max_busy_score=0.5)
    assert s.score(ctx(), [ep("a", 2), ep("b", 3), ep("c", 4)]) == [1.0, 0.125, 0.0]


def test_active_request_gives_all_ones_when_nothing_is_in_flight():
    assert ActiveRequestScorer().score(ctx(), [ep("a"), ep("b")]) == [1.0, 1.0]


def test_active_request_rejects_max_busy_score_above_one():
    with pytest.raises(ValueError, match="max_busy_score"):
        RouterConfig.model_validate({"profiles": {"x": {"scorers": [
            {"type": "active-request", "params": {"max_busy_score": 2}}]}}})


# llm-d token-load-scorer: 1 - min(1, tokens / 4,194,304)

def test_token_load_is_one_without_in_flight_tokens():
    assert TokenLoadScorer().score(ctx(), [ep("a")]) == [1.0]


def test_token_load_halves_at_half_the_threshold():
    assert TokenLoadScorer().score(ctx(), [ep("a", inflight_tokens=2_097_152)]) == [0.5]


def test_token_load_is_zero_past_the_threshold():
    assert TokenLoadScorer().score(ctx(), [ep("a", inflight_tokens=5_000_000)]) == [0.0]


def test_token_load_is_absolute_where_the_inflight_scorer_is_relative():
    pods = [ep("a", inflight_tokens=100), ep("b", inflight_tokens=200)]
    absolute = TokenLoadScorer().score(ctx(), pods)
    relative = InflightScorer(by="tokens").score(ctx(), pods)
    assert absolute == [1 - 100 / 4_194_304, 1 - 200 / 4_194_304]
    assert relative[0] - relative[1] > 0.1 > absolute[0] - absolute[1]


def test_token_load_can_add_the_requests_uncached_tokens():
    sig = Signals()
    cached_on(sig, "a", 1.0)
    c = ctx(signals=sig)
    scores = TokenLoadScorer(queue_threshold_tokens=1000, add_request_tokens=True).score(c, [ep("a"), ep("b")])
    assert scores == [1.0, pytest.approx(1 - c.prompt_tokens / 1000)]


# llm-d no-hit-lru-scorer

def test_no_hit_lru_is_neutral_when_any_pod_has_a_hit():
    sig = Signals()
    cached_on(sig, "b", 0.25)
    assert NoHitLRUScorer().score(ctx(signals=sig), [ep("a"), ep("b"), ep("c")]) == [0.5, 0.5, 0.5]


def test_no_hit_lru_ranks_never_used_pods_first_in_candidate_order():
    assert NoHitLRUScorer().score(ctx(), [ep("a"), ep("b"), ep("c")]) == [1.0, 0.5, 0.0]


def test_no_hit_lru_prefers_the_least_recently_cold_pod():
    a, b, c = ep("a"), ep("b"), ep("c")
    note_routed(ctx("first cold " * 50), c)
    note_routed(ctx("second cold " * 50), a)
    assert NoHitLRUScorer().score(ctx(), [a, b, c]) == [0.0, 1.0, 0.5]


def test_no_hit_lru_leaves_a_lora_request_to_lora_affinity():
    lora = ctx()
    lora.lora = "sql"
    a, b = ep("a"), ep("b")
    note_routed(lora, a)
    assert NoHitLRUScorer().score(lora, [a, b]) == [0.5, 0.5] and a.last_cold_seq == 0


def test_note_routed_stamps_only_cold_requests():
    sig = Signals()
    cached_on(sig, "b", 0.5)
    a = ep("a")
    note_routed(ctx(signals=sig), a)
    assert not is_cold(ctx(signals=sig)) and a.last_cold_seq == 0


def test_no_hit_lru_spreads_successive_cold_requests_evenly():
    sig = Signals()
    pods = [ep(n) for n in "abcd"]
    profile = Profile("p", [], [WeightedScorer(NoHitLRUScorer(), 1)], MaxScorePicker(rng=random.Random(1)))
    chosen = Counter()
    for i in range(12):
        c = ctx(f"cold prompt number {i} " * 40, sig)
        decision = profile.run(c, pods)
        note_routed(c, decision.chosen)
        sig.approx.record(decision.chosen.name, c.approx_hashes)
        chosen[decision.chosen.name] += 1
    assert chosen == {"a": 3, "b": 3, "c": 3, "d": 3}


# llm-d prefix-cache-affinity-filter

def test_affinity_keeps_only_pods_at_or_above_the_threshold():
    sig = Signals()
    cached_on(sig, "a", 1.0)
    cached_on(sig, "b", 0.5)
    f = PrefixCacheAffinityFilter(exploration_probability=0.0)
    assert [e.name for e in f.filter(ctx(signals=sig), [ep("a"), ep("b"), ep("c")])] == ["a"]


def test_affinity_keeps_all_when_no_pod_is_sticky():
    sig = Signals()
    cached_on(sig, "a", 0.5)
    f = PrefixCacheAffinityFilter(exploration_probability=0.0)
    assert len(f.filter(ctx(signals=sig), [ep("a"), ep("b")])) == 2


def test_affinity_explores_with_its_probability():
    sig = Signals()
    cached_on(sig, "a", 1.0)
    f = PrefixCacheAffinityFilter(rng=random.Random(7))
    kept_all = sum(len(f.filter(ctx(signals=sig), [ep("a"), ep("b")])) == 2 for _ in range(10_000))
    assert 50 <= kept_all <= 150  # 1% of 10,000, seeded


def test_affinity_predicts_ttft_from_the_prefill_backlog_over_peak_throughput():
    f = PrefixCacheAffinityFilter()
    assert f.predicted_ttft_ms(ctx(), ep("a", prefill_tokens=15_928), cached=1.0) == pytest.approx(1000.0)


def test_affinity_breaks_stickiness_past_the_ttft_penalty():
    sig = Signals()
    cached_on(sig, "a", 1.0)
    f = PrefixCacheAffinityFilter(exploration_probability=0.0)
    hot = ep("a", prefill_tokens=15_928 * 6)  # 6 s of backlog vs an idle pod's ~0 s
    assert len(f.filter(ctx(signals=sig), [hot, ep("b")])) == 2


def test_affinity_stays_sticky_within_the_ttft_penalty():
    sig = Signals()
    cached_on(sig, "a", 1.0)
    f = PrefixCacheAffinityFilter(exploration_probability=0.0)
    warm = ep("a", prefill_tokens=15_928 * 4)  # 4 s of backlog: under the 5 s allowance
    assert [e.name for e in f.filter(ctx(signals=sig), [warm, ep("b")])] == ["a"]


def test_affinity_penalty_zero_disables_the_gate():
    sig = Signals()
    cached_on(sig, "a", 1.0)
    f = PrefixCacheAffinityFilter(exploration_probability=0.0, max_ttft_penalty_ms=0)
    assert [e.name for e in f.filter(ctx(signals=sig), [ep("a", prefill_tokens=10**8), ep("b")])] == ["a"]


# SGLang power_of_two

def test_power_of_two_takes_the_better_of_two():
    p = PowerOfTwoPicker(rng=random.Random(3))
    pods = [ep("a"), ep("b")]
    assert all(p.pick(ctx(), pods, [0.2, 0.9])[0].name == "b" for _ in range(50))


def test_power_of_two_never_picks_the_worst_of_three():
    p = PowerOfTwoPicker(rng=random.Random(3))
    pods = [ep("a"), ep("b"), ep("c")]
    firsts = Counter(p.pick(ctx(), pods, [0.5, 0.1, 0.9])[0].name for _ in range(600))
    assert firsts["b"] == 0 and firsts["a"] > 0 and firsts["c"] > 0


def test_power_of_two_breaks_equal_totals_by_in_flight_requests():
    p = PowerOfTwoPicker(rng=random.Random(3))
    assert all(p.pick(ctx(), [ep("a", 5), ep("b", 1)], [1.0, 1.0])[0].name == "b" for _ in range(50))


def test_power_of_two_spreads_ties():
    p = PowerOfTwoPicker(rng=random.Random(3))
    pods = [ep(n) for n in "abcd"]
    firsts = Counter(p.pick(ctx(), pods, [1.0] * 4)[0].name for _ in range(400))
    assert set(firsts) == set("abcd") and min(firsts.values()) > 50


def test_power_of_two_returns_every_candidate_once():
    p = PowerOfTwoPicker(rng=random.Random(3))
    pods = [ep(n) for n in "abcde"]
    assert sorted(e.name for e in p.pick(ctx(), pods, [0.1, 0.2, 0.3, 0.4, 0.5])) == list("abcde")


# Consistent hash on a session key (SGLang, vLLM router, production-stack `session`)

def test_consistent_hash_keeps_a_session_on_one_pod_whatever_the_candidate_order():
    p = ConsistentHashPicker()
    pods = [ep(n) for n in "abcd"]
    c = ctx(headers={"x-session-id": "alice"})
    first = p.pick(c, pods, [0.0] * 4)[0].name
    assert all(p.pick(c, random.Random(i).sample(pods, 4), [0.0] * 4)[0].name == first for i in range(20))


def test_consistent_hash_reads_the_body_user_field_without_a_header():
    p = ConsistentHashPicker()
    assert p.key(ctx(user="bob")) == "bob"


def test_consistent_hash_prefers_the_header_over_the_body():
    p = ConsistentHashPicker()
    assert p.key(ctx(headers={"x-user-id": "carol"}, user="bob")) == "carol"


def test_consistent_hash_without_a_key_takes_the_least_loaded():
    p = ConsistentHashPicker(rng=random.Random(0))
    assert p.pick(ctx(), [ep("a", 3), ep("b", 0), ep("c", 2)], [0.0] * 3)[0].name == "b"


def test_consistent_hash_moves_only_the_removed_pods_keys():
    p = ConsistentHashPicker()
    pods = [ep(n) for n in "abcd"]
    keys = [f"user-{i}" for i in range(300)]
    before = {k: p.pick(ctx(headers={"x-session-id": k}), pods, [0.0] * 4)[0].name for k in keys}
    after = {k: p.pick(ctx(headers={"x-session-id": k}), pods[:3], [0.0] * 3)[0].name for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != "d")


def test_consistent_hash_spreads_keys_over_the_pods():
    p = ConsistentHashPicker()
    pods = [ep(n) for n in "abcd"]
    counts = Counter(p.pick(ctx(headers={"x-session-id": f"s{i}"}), pods, [0.0] * 4)[0].name for i in range(2000))
    assert min(counts.values()) > 2000 * 0.15


def test_consistent_hash_orders_the_fallbacks_without_repeats():
    p = ConsistentHashPicker()
    pods = [ep(n) for n in "abcd"]
    assert sorted(e.name for e in p.pick(ctx(headers={"x-session-id": "z"}), pods, [0.0] * 4)) == list("abcd")


# SGLang cache_aware

def test_cache_aware_scores_zero_at_or_below_the_threshold():
    sig = Signals()
    cached_on(sig, "a", 0.25)
    cached_on(sig, "b", 0.5)
    c = ctx(signals=sig)
    scores = CacheAwareScorer().score(c, [ep("a"), ep("b")])
    assert scores == [0.0, c.approx_match["b"] / len(c.approx_hashes)] and scores[1] > 0.3


def test_least_loaded_if_imbalanced_keeps_only_the_least_loaded():
    f = LeastLoadedIfImbalancedFilter()
    assert [e.name for e in f.filter(ctx(), [ep("a", 65), ep("b", 130), ep("c", 100)])] == ["a"]


def test_least_loaded_if_imbalanced_needs_both_thresholds():
    f = LeastLoadedIfImbalancedFilter()
    # 40 - 0 is within the absolute threshold; 200 is within 1.5 x 150
    assert len(f.filter(ctx(), [ep("a", 0), ep("b", 40)])) == 2
    assert len(f.filter(ctx(), [ep("a", 150), ep("b", 200)])) == 2


def _sglang():
    return build_profile("sglang-cache-aware", BUILTIN_PROFILES["sglang-cache-aware"], random.Random(0))


def test_sglang_profile_follows_a_match_above_the_threshold_despite_load():
    sig = Signals()
    cached_on(sig, "b", 0.5)
    assert _sglang().run(ctx(signals=sig), [ep("a", 0), ep("b", 20)]).chosen.name == "b"


def test_sglang_profile_takes_the_least_loaded_below_the_threshold():
    sig = Signals()
    cached_on(sig, "b", 0.2)
    assert _sglang().run(ctx(signals=sig), [ep("a", 0), ep("b", 20)]).chosen.name == "a"


def test_sglang_profile_takes_the_shortest_queue_when_imbalanced():
    sig = Signals()
    cached_on(sig, "b", 1.0)
    assert _sglang().run(ctx(signals=sig), [ep("a", 0), ep("b", 100)]).chosen.name == "a"


# AIBrix least-latency, throughput, least-kv-cache, least-utilization / least-busy-time

def test_least_latency_rescales_each_pod_to_the_guessed_request_size():
    a = ep("a", queue_time_s=0.1, prefill_time_s=0.2, prompt_tokens_per_req=100, decode_time_s=1.0,
           gen_tokens_per_req=50)
    b = ep("b", queue_time_s=0.0, prefill_time_s=0.5, prompt_tokens_per_req=300, decode_time_s=2.0,
           gen_tokens_per_req=200)
    # guessP = (100 + 300)/2 = 200, guessG = (50 + 200)/2 = 125
    assert expected_latency_s(a, 200, 125) == pytest.approx(0.1 + 0.4 + 2.5)
    assert expected_latency_s(b, 200, 125) == pytest.approx(0.5 / 300 * 200 + 2.0 / 200 * 125)
    assert LeastLatencyScorer().score(ctx(), [a, b]) == [0.0, 1.0]


def test_least_latency_guesses_aibrix_defaults_when_no_pod_reports_tokens():
    a = ep("a", prefill_time_s=0.1, decode_time_s=1.0)
    assert expected_latency_s(a, 10.0, 100.0) == pytest.approx(1.1)


def test_throughput_counts_prompt_tokens_twice():
    a = ep("a", prompt_tokens_per_req=100, gen_tokens_per_req=50)  # 250
    b = ep("b", prompt_tokens_per_req=60, gen_tokens_per_req=200)  # 320
    assert ThroughputScorer().score(ctx(), [a, b]) == [1.0, 0.0]


def test_least_kv_cache_adds_cpu_to_gpu_usage():
    pods = [ep("a", kv_usage=0.5, cpu_kv_usage=0.3), ep("b", kv_usage=0.7), ep("c", kv_usage=0.9)]
    assert LeastKVCacheScorer().score(ctx(), pods) == pytest.approx([0.5, 1.0, 0.0])


def test_least_gpu_cache_ignores_cpu_usage():
    pods = [ep("a", kv_usage=0.5, cpu_kv_usage=0.3), ep("b", kv_usage=0.7)]
    assert LeastGPUCacheScorer().score(ctx(), pods) == [1.0, 0.0]


def test_least_utilization_never_prefers_a_pod_without_the_gauge():
    pods = [ep("a", busy_ratio=0.2), ep("b", busy_ratio=0.6), ep("c")]
    assert LeastUtilizationScorer().score(ctx(), pods) == [1.0, 0.0, 0.0]


def test_least_utilization_ties_everything_when_no_pod_reports():
    assert LeastBusyTimeScorer().score(ctx(), [ep("a"), ep("b")]) == [1.0, 1.0]


VLLM_1 = """vllm:num_requests_running{model_name="m"} 1
vllm:cpu_cache_usage_perc{model_name="m"} 0.25
vllm:request_queue_time_seconds_sum{model_name="m"} 1.0
vllm:request_queue_time_seconds_count{model_name="m"} 10
vllm:request_prefill_time_seconds_sum{model_name="m"} 2.0
vllm:request_prefill_time_seconds_count{model_name="m"} 10
vllm:request_decode_time_seconds_sum{model_name="m"} 5.0
vllm:request_decode_time_seconds_count{model_name="m"} 10
vllm:request_prompt_tokens_sum{model_name="m"} 1000
vllm:request_prompt_tokens_count{model_name="m"} 10
vllm:request_generation_tokens_sum{model_name="m"} 500
vllm:request_generation_tokens_count{model_name="m"} 10
"""
VLLM_2 = VLLM_1.replace("seconds_sum{model_name=\"m\"} 1.0", "seconds_sum{model_name=\"m\"} 4.0") \
    .replace("_count{model_name=\"m\"} 10", "_count{model_name=\"m\"} 20") \
    .replace("tokens_sum{model_name=\"m\"} 1000", "tokens_sum{model_name=\"m\"} 4000")


def test_scrape_reads_aibrix_latency_inputs_as_interval_means():
    first = parse_metrics(VLLM_1, "vLLM", now=1.0)
    second = parse_metrics(VLLM_2, "vLLM", first, now=2.0)
    assert (first.queue_time_s, first.prefill_time_s, first.decode_time_s) == (0.1, 0.2, 0.5)
    assert (first.prompt_tokens_per_req, first.gen_tokens_per_req, first.cpu_kv_usage) == (100, 50, 0.25)
    assert second.queue_time_s == pytest.approx(0.3) and second.prompt_tokens_per_req == pytest.approx(300)


def test_scrape_reads_sglang_tokens_per_request_from_counters():
    text = "sglang:prompt_tokens_total 600\nsglang:generation_tokens_total 90\nsglang:num_requests_total 3\n"
    m = parse_metrics(text, "SGLang", now=1.0)
    assert (m.prompt_tokens_per_req, m.gen_tokens_per_req) == (200, 30)


def test_scrape_reads_the_engine_utilization_gauge():
    assert parse_metrics("engine_utilization 0.4\n", "vLLM", now=1.0).busy_ratio == 0.4


def test_every_reference_profile_builds():
    for name in ("llm-d", "llm-d-optimized-baseline", "sglang-cache-aware", "sglang-power-of-two", "session",
                 "aibrix-least-latency", "aibrix-throughput", "aibrix-least-kv-cache", "aibrix-least-utilization"):
        assert build_profile(name, BUILTIN_PROFILES[name], random.Random(0)).name == name


# Properties

metrics_st = st.builds(
    dict, waiting=st.floats(0, 1e4), kv_usage=st.floats(0, 1), cpu_kv_usage=st.floats(0, 1),
    queue_time_s=st.none() | st.floats(0, 100), prefill_time_s=st.none() | st.floats(0, 100),
    decode_time_s=st.none() | st.floats(0, 100), prompt_tokens_per_req=st.none() | st.floats(0, 1e5),
    gen_tokens_per_req=st.none() | st.floats(0, 1e5), busy_ratio=st.none() | st.floats(0, 1))
pod_st = st.tuples(st.integers(0, 500), st.integers(0, 10**7), st.integers(0, 10**6), metrics_st)
SCORERS = [LoadAwareScorer(), ActiveRequestScorer(), ActiveRequestScorer(idle_threshold=3, max_busy_score=0.4),
           TokenLoadScorer(), TokenLoadScorer(add_request_tokens=True), NoHitLRUScorer(), CacheAwareScorer(),
           LeastLatencyScorer(), ThroughputScorer(), LeastKVCacheScorer(), LeastGPUCacheScorer(),
           LeastUtilizationScorer()]


@settings(max_examples=150, deadline=None)
@given(st.lists(pod_st, min_size=1, max_size=6))
def test_new_scorers_stay_within_zero_and_one(pods):
    eps = [ep(f"p{i}", r, t, pt, **m) for i, (r, t, pt, m) in enumerate(pods)]
    for scorer in SCORERS:
        scores = scorer.score(ctx(), eps)
        assert len(scores) == len(eps) and all(0.0 <= s <= 1.0 for s in scores), scorer.name


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["llm-d", "llm-d-optimized-baseline", "sglang-cache-aware", "sglang-power-of-two",
                        "session", "aibrix-least-latency", "aibrix-throughput", "aibrix-least-kv-cache",
                        "aibrix-least-utilization"]), metrics_st)
def test_identical_pods_never_all_get_the_same_request(name, metrics):
    profile = build_profile(name, BUILTIN_PROFILES[name], random.Random(5))
    pods = [ep(n, **metrics) for n in "abcd"]
    chosen = {profile.run(ctx(), pods).chosen.name for _ in range(40)}
    assert len(chosen) > 1


# End to end: the router with real enginesim processes

async def _pair(engines, start_router, profile):
    pods = [await engines.start(f"pod-{i}", "--served-model-name", "m", labels={"app": "m"}) for i in range(2)]
    return await start_router(profile=profile, kvEvents=False, modelServers=[server("m", model="m")],
                              modelRoutes=[route("m", "m", [{"name": "all", "targetModels": [{"modelServerName": "m"}]}])],
                              endpoints=[p.endpoint() for p in pods])


@pytest.mark.slow
async def test_router_stamps_the_pod_that_gets_a_cold_request_and_not_a_warm_one(engines, start_router):
    r = await _pair(engines, start_router, "llm-d")
    body = {"model": "m", "prompt": "a long shared system prompt " * 20, "max_tokens": 2}
    status, _, headers = await r.complete(body)
    pod = r.router.state.endpoints[headers["x-caldera-pod"]]
    stamp = pod.last_cold_seq
    status2, _, headers2 = await r.complete(body)
    assert status == status2 == 200 and stamp > 0
    assert r.router.state.endpoints[headers2["x-caldera-pod"]].last_cold_seq in (0, stamp)


@pytest.mark.slow
async def test_session_profile_keeps_a_user_on_one_pod(engines, start_router):
    r = await _pair(engines, start_router, "session")
    pods = set()
    for i in range(6):
        status, _, headers = await r.complete({"model": "m", "prompt": f"turn {i}", "max_tokens": 2},
                                              {"x-session-id": "alice"})
        assert status == 200
        pods.add(headers["x-caldera-pod"])
    assert len(pods) == 1
