from router.scrape import parse_metrics

VLLM_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.42
vllm:cache_config_info{block_size="16",num_gpu_blocks="31250",engine="0"} 1.0
vllm:lora_requests_info{max_lora="2",running_lora_adapters="sql,chat",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.6e9
vllm:time_to_first_token_seconds_sum{model_name="m"} 10.0
vllm:time_to_first_token_seconds_count{model_name="m"} 20.0
vllm:inter_token_latency_seconds_sum{model_name="m"} 1.2
vllm:inter_token_latency_seconds_count{model_name="m"} 100.0
vllm:prefix_cache_hits_total{model_name="m"} 50.0
vllm:prefix_cache_queries_total{model_name="m"} 200.0
"""

SGLANG_TEXT = """sglang:num_running_reqs{model_name="m"} 5
sglang:num_queue_reqs{model_name="m"} 1
sglang:token_usage{model_name="m"} 0.3
sglang:cache_config_info{page_size="32",num_pages="1000"} 1
"""


def test_vllm_gauges_and_cache_config_are_read():
    m = parse_metrics(VLLM_TEXT, "vLLM", now=1.0)
    assert (m.running, m.waiting, m.kv_usage) == (3.0, 2.0, 0.42)
    assert (m.block_size, m.num_gpu_blocks) == (16, 31250)
    assert (m.prefix_hits, m.prefix_queries) == (50.0, 200.0)


def test_vllm_lora_info_takes_the_newest_series():
    m = parse_metrics(VLLM_TEXT, "vLLM")
    assert m.running_loras == {"sql", "chat"} and m.max_lora == 2


def test_histogram_means_are_over_the_last_interval():
    first = parse_metrics(VLLM_TEXT, "vLLM")
    assert first.ttft_s == 0.5
    later = VLLM_TEXT.replace("seconds_sum{model_name=\"m\"} 10.0", "seconds_sum{model_name=\"m\"} 14.0") \
                     .replace("seconds_count{model_name=\"m\"} 20.0", "seconds_count{model_name=\"m\"} 30.0")
    assert parse_metrics(later, "vLLM", first).ttft_s == 0.4


def test_old_vllm_kv_usage_name_is_still_read():
    m = parse_metrics("vllm:gpu_cache_usage_perc 0.9\n", "vLLM")
    assert m.kv_usage == 0.9


def test_sglang_names_are_read():
    m = parse_metrics(SGLANG_TEXT, "SGLang")
    assert (m.running, m.waiting, m.kv_usage, m.block_size, m.num_gpu_blocks) == (5, 1, 0.3, 32, 1000)


def test_garbage_lines_are_skipped():
    m = parse_metrics("vllm:num_requests_running{ 3\nvllm:num_requests_waiting nan-ish\nnoise\n", "vLLM")
    assert (m.running, m.waiting) == (0.0, 0.0)
