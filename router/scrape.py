"""Engine metrics: parse vLLM and SGLang Prometheus text into EngineMetrics, and scrape pods.

The parser reads only the families routing needs and skips everything else line by line;
it is a pure function so it can be tested on captured text. TTFT and TPOT are histogram
means over the last scrape interval (sum/count deltas), as Kthena's least-latency does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp

from router.endpoints import Endpoint, EngineMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricNames:
    running: tuple[str, ...]
    waiting: tuple[str, ...]
    kv_usage: tuple[str, ...]
    ttft: tuple[str, ...]
    tpot: tuple[str, ...]
    cache_config: str
    block_size_label: str
    num_blocks_label: str
    prefix_hits: tuple[str, ...] = ()
    prefix_queries: tuple[str, ...] = ()
    lora_info: str | None = None
    # AIBrix's least-latency / throughput / least-kv-cache / least-utilization inputs.
    queue_time: tuple[str, ...] = ()  # histograms
    prefill_time: tuple[str, ...] = ()
    decode_time: tuple[str, ...] = ()
    prompt_per_req: tuple[tuple[str, str], ...] = ()  # (sum, count) pairs: histogram or counters
    gen_per_req: tuple[tuple[str, str], ...] = ()
    cpu_kv_usage: tuple[str, ...] = ()
    busy: tuple[str, ...] = ("engine_utilization", "gpu_busy_time_ratio")  # xLLM's gauge; vLLM/SGLang lack one


VLLM = MetricNames(
    running=("vllm:num_requests_running",),
    waiting=("vllm:num_requests_waiting",),
    kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    ttft=("vllm:time_to_first_token_seconds",),
    tpot=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    cache_config="vllm:cache_config_info", block_size_label="block_size", num_blocks_label="num_gpu_blocks",
    prefix_hits=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    prefix_queries=("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    lora_info="vllm:lora_requests_info",
    queue_time=("vllm:request_queue_time_seconds",),
    prefill_time=("vllm:request_prefill_time_seconds",),
    decode_time=("vllm:request_decode_time_seconds",),
    prompt_per_req=(("vllm:request_prompt_tokens_sum", "vllm:request_prompt_tokens_count"),),
    gen_per_req=(("vllm:request_generation_tokens_sum", "vllm:request_generation_tokens_count"),),
    cpu_kv_usage=("vllm:cpu_cache_usage_perc",),
)
SGLANG = MetricNames(
    running=("sglang:num_running_reqs",),
    waiting=("sglang:num_queue_reqs",),
    kv_usage=("sglang:token_usage",),
    ttft=("sglang:time_to_first_token_seconds",),
    tpot=("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
    cache_config="sglang:cache_config_info", block_size_label="page_size", num_blocks_label="num_pages",
    queue_time=("sglang:queue_time_seconds",),
    prompt_per_req=(("sglang:prompt_tokens_total", "sglang:num_requests_total"),),
    gen_per_req=(("sglang:generation_tokens_total", "sglang:num_requests_total"),),
)
NAMES = {"vLLM": VLLM, "SGLang": SGLANG}

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str, wanted: set[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of the wanted metric names (including _sum/_count suffixes if asked)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _LINE.match(line)
        if m is None or m.group(1) not in wanted:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def _first(samples: dict[str, list[tuple[dict[str, str], float]]], names: Iterable[str],
           agg: Callable[[Iterable[float]], float] = sum) -> float | None:
    for name in names:
        if name in samples:
            return agg(v for _, v in samples[name])
    return None


def parse_metrics(text: str, engine: str, previous: EngineMetrics | None = None,
                  now: float | None = None) -> EngineMetrics:
    names = NAMES.get(engine, VLLM)
    hist_names = names.ttft + names.tpot + names.queue_time + names.prefill_time + names.decode_time
    hist = [n + s for n in hist_names for s in ("_sum", "_count")]
    hist += [n for pair in names.prompt_per_req + names.gen_per_req for n in pair]
    wanted = set(names.running + names.waiting + names.kv_usage + names.prefix_hits + names.prefix_queries
                 + tuple(hist) + (names.cache_config,) + ((names.lora_info,) if names.lora_info else ())
                 + names.cpu_kv_usage + names.busy)
    s = parse_samples(text, wanted)
    m = EngineMetrics(scraped_at=time.time() if now is None else now)
    m.running = _first(s, names.running) or 0.0
    m.waiting = _first(s, names.waiting) or 0.0
    m.kv_usage = _first(s, names.kv_usage, max) or 0.0
    m.prefix_hits = _first(s, names.prefix_hits) or 0.0
    m.prefix_queries = _first(s, names.prefix_queries) or 0.0
    m.ttft_s = _interval_mean(s, names.ttft, previous, "ttft_s")
    m.tpot_s = _interval_mean(s, names.tpot, previous, "tpot_s")
    m.queue_time_s = _interval_mean(s, names.queue_time, previous, "queue_time_s")
    m.prefill_time_s = _interval_mean(s, names.prefill_time, previous, "prefill_time_s")
    m.decode_time_s = _interval_mean(s, names.decode_time, previous, "decode_time_s")
    m.prompt_tokens_per_req = _interval_ratio(s, names.prompt_per_req, previous, "prompt_tokens_per_req")
    m.gen_tokens_per_req = _interval_ratio(s, names.gen_per_req, previous, "gen_tokens_per_req")
    m.cpu_kv_usage = _first(s, names.cpu_kv_usage, max) or 0.0
    m.busy_ratio = _first(s, names.busy, max)
    for labels, _ in s.get(names.cache_config, ()):
        if labels.get(names.block_size_label, "").isdigit():
            m.block_size = int(labels[names.block_size_label])
        if labels.get(names.num_blocks_label, "").isdigit():
            m.num_gpu_blocks = int(labels[names.num_blocks_label])
    if names.lora_info and s.get(names.lora_info):
        labels, _ = max(s[names.lora_info], key=lambda lv: lv[1])  # the newest series
        m.running_loras = frozenset(a for a in labels.get("running_lora_adapters", "").split(",") if a)
        m.waiting_loras = frozenset(a for a in labels.get("waiting_lora_adapters", "").split(",") if a)
        if labels.get("max_lora", "").isdigit():
            m.max_lora = int(labels["max_lora"])
    # Keep raw histogram totals to compute the next interval's mean.
    m.hist_totals = {k: _first(s, (k,)) or 0.0 for k in hist}
    return m


def _interval_mean(s: dict[str, list[tuple[dict[str, str], float]]], names: tuple[str, ...],
                   previous: EngineMetrics | None, attr: str) -> float | None:
    return _interval_ratio(s, tuple((n + "_sum", n + "_count") for n in names), previous, attr)


def _interval_ratio(s: dict[str, list[tuple[dict[str, str], float]]], pairs: tuple[tuple[str, str], ...],
                    previous: EngineMetrics | None, attr: str) -> float | None:
    """Δsum/Δcount since the previous scrape, from the first (sum, count) pair the engine exports."""
    prev_state = previous.hist_totals if previous is not None else {}
    for sum_name, count_name in pairs:
        total = _first(s, (sum_name,))
        count = _first(s, (count_name,))
        if total is None or count is None:
            continue
        d_count = count - prev_state.get(count_name, 0.0)
        d_sum = total - prev_state.get(sum_name, 0.0)
        if d_count > 0:
            return d_sum / d_count
        # No new samples this interval: keep the previous mean rather than forgetting it.
        return getattr(previous, attr, None) if previous is not None else None
    return None


async def scrape_once(session: aiohttp.ClientSession, endpoint: Endpoint, timeout_s: float) -> None:
    try:
        async with session.get(f"{endpoint.url}/metrics",
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        if endpoint.healthy:
            log.warning("metrics scrape failed", extra={"pod": endpoint.name, "reason": repr(exc)})
        endpoint.healthy = False
        return
    endpoint.metrics = parse_metrics(text, endpoint.engine, endpoint.metrics)
    endpoint.healthy = True


async def scrape_loop(endpoints: Callable[[], Iterable[Endpoint]], interval_s: float,
                      session: aiohttp.ClientSession, max_concurrency: int = 64) -> None:
    """Scrape every endpoint each interval, at most max_concurrency at once."""
    gate = asyncio.Semaphore(max_concurrency)

    async def one(ep: Endpoint) -> None:
        async with gate:
            await scrape_once(session, ep, timeout_s=max(interval_s, 0.5))

    while True:
        started = time.monotonic()
        await asyncio.gather(*(one(ep) for ep in list(endpoints())), return_exceptions=True)
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
