"""Prometheus metrics under vLLM's names (and SGLang's in SGLang mode)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from enginesim.testing import SimProcess

VLLM_SERIES = {
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
    "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
    "vllm:e2e_request_latency_seconds_bucket", "vllm:request_queue_time_seconds_bucket",
    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:cache_config_info",
    "vllm:lora_requests_info", "vllm:request_prefill_time_seconds_bucket",
    "vllm:request_decode_time_seconds_bucket", "vllm:num_preemptions_total",
    "vllm:request_success_total", "vllm:request_time_per_output_token_seconds_bucket",
}
SGLANG_SERIES = {
    "sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage", "sglang:cache_hit_rate",
    "sglang:gen_throughput", "sglang:num_used_tokens", "sglang:time_to_first_token_seconds_bucket",
    "sglang:inter_token_latency_seconds_bucket", "sglang:e2e_request_latency_seconds_bucket",
    "sglang:prompt_tokens_total", "sglang:generation_tokens_total", "sglang:cache_config_info",
}


def samples(sim: SimProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(sim.url + "/metrics").text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def exercise(sim: SimProcess) -> None:
    prompt = " ".join(f"m{i}" for i in range(40))
    for _ in range(2):
        assert httpx.post(sim.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 3}).status_code == 200


def test_vllm_metric_names_are_exposed(sim: SimProcess) -> None:
    exercise(sim)
    assert set(samples(sim)) >= VLLM_SERIES


def test_prefix_cache_hits_count_cached_tokens(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim()
    exercise(sim)
    s = samples(sim)
    assert s["vllm:prefix_cache_queries_total"][0][1] == 80
    assert s["vllm:prefix_cache_hits_total"][0][1] == 32


def test_cache_config_info_carries_block_size_and_gpu_blocks(sim: SimProcess) -> None:
    labels = samples(sim)["vllm:cache_config_info"][0][0]
    assert (labels["block_size"], labels["num_gpu_blocks"]) == ("16", "512")


def test_metrics_carry_the_model_name_label(sim: SimProcess) -> None:
    labels = samples(sim)["vllm:num_requests_running"][0][0]
    assert labels["model_name"] == "sim-model"


def test_token_counters_follow_requests(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim()
    exercise(sim)
    s = samples(sim)
    assert s["vllm:prompt_tokens_total"][0][1] == 80
    assert s["vllm:generation_tokens_total"][0][1] == 6


def test_idle_engine_reports_zero_running_and_waiting(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim()
    s = samples(sim)
    assert s["vllm:num_requests_running"][0][1] == 0
    assert s["vllm:num_requests_waiting"][0][1] == 0
    assert s["vllm:kv_cache_usage_perc"][0][1] == 0


def test_event_loop_lag_is_exposed(sim: SimProcess) -> None:
    assert "enginesim:event_loop_lag_seconds" in samples(sim)


def test_sglang_mode_uses_sglang_names(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--mode", "sglang")
    exercise(sim)
    names = set(samples(sim))
    assert names >= SGLANG_SERIES
    assert not any(n.startswith("vllm:") for n in names)


def test_sglang_cache_hit_rate_reflects_reuse(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--mode", "sglang")
    exercise(sim)
    assert samples(sim)["sglang:cache_hit_rate"][0][1] == 32 / 80


def test_hidden_metrics_flag_adds_the_deprecated_names(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--show-hidden-metrics-for-version", "0.10")
    exercise(sim)
    s = samples(sim)
    assert s["vllm:gpu_cache_usage_perc"][0][1] == 0
    assert s["vllm:gpu_prefix_cache_hits_total"][0][1] == 32


def test_deprecated_names_are_hidden_by_default(sim: SimProcess) -> None:
    assert "vllm:gpu_cache_usage_perc" not in samples(sim)


def test_fake_metrics_flag_pins_the_gauges(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--fake-metrics", '{"running-requests": 7, "waiting-requests": 12, "kv-cache-usage": 0.9}')
    s = samples(sim)
    assert s["vllm:num_requests_running"][0][1] == 7
    assert s["vllm:num_requests_waiting"][0][1] == 12
    assert s["vllm:kv_cache_usage_perc"][0][1] == 0.9


def test_fake_metrics_can_be_set_and_cleared_at_runtime(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim()
    assert httpx.post(sim.url + "/debug/fake_metrics", json={"waiting-requests": 30}).status_code == 200
    assert samples(sim)["vllm:num_requests_waiting"][0][1] == 30
    httpx.post(sim.url + "/debug/fake_metrics", json={})
    assert samples(sim)["vllm:num_requests_waiting"][0][1] == 0


def test_fake_metrics_reject_unknown_keys(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim()
    resp = httpx.post(sim.url + "/debug/fake_metrics", json={"queue": 3})
    assert resp.status_code == 400
    assert "unknown keys" in resp.json()["error"]["message"]
