"""Prometheus metrics under vLLM's current names (or SGLang's in SGLang mode).

Gauges and info metrics are read from the engine at scrape time; histograms and
counters are fed by the engine's observer hooks. Durations are in virtual seconds, so
they match the profile whatever ``--time-scale`` is.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from enginesim.config import parse_fake_metrics
from enginesim.engine import EngineRequest
from enginesim.loopmonitor import LoopLagMonitor

if TYPE_CHECKING:
    from enginesim.engine import Engine

# The _created series are noise for routers and autoscalers scraping every second.
disable_created_metrics()

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
               0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_BUCKETS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                   40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


class FastHistogram(Collector):
    """A single-series histogram for per-token observations.

    ``prometheus_client.Histogram.observe`` takes a lock and walks every bucket in Python;
    at thousands of tokens a second that is a visible share of the event loop. This keeps
    plain per-bucket counts (``bisect`` in C) and renders the same exposition at scrape time.
    """

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...], labels: dict[str, str]) -> None:
        self.name = name
        self.doc = doc
        self.bounds = list(buckets)
        self.counts = [0] * (len(buckets) + 1)  # last slot: +Inf only
        self.total = 0.0
        self.labels = labels

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(self.bounds, self.counts, strict=False):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        buckets.append(("+Inf", cumulative + self.counts[-1]))
        family.add_metric(list(self.labels.values()), buckets, self.total)
        yield family


class _StateCollector(Collector):
    def __init__(self, metrics: EngineMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        e = m.engine
        labels = m.label_names
        values = m.label_values
        fake = m.fake
        running = fake.get("running-requests", e.num_running)
        waiting = fake.get("waiting-requests", e.num_waiting)
        usage = fake.get("kv-cache-usage", e.blocks.usage())
        if m.mode == "sglang":
            for name, doc, value in (
                ("sglang:num_running_reqs", "The number of running requests.", running),
                ("sglang:num_queue_reqs", "The number of requests in the waiting queue.", waiting),
                ("sglang:token_usage", "The token usage of the KV cache (0-1).", usage),
                ("sglang:num_used_tokens", "The number of used KV tokens.",
                 (e.blocks.num_blocks - e.blocks.num_free) * e.profile.block_size),
                ("sglang:cache_hit_rate", "The prefix cache hit rate.", m.hit_rate()),
                ("sglang:gen_throughput", "The generation throughput (token/s).", m.gen_throughput()),
            ):
                g = GaugeMetricFamily(name, doc, labels=labels)
                g.add_metric(values, value)
                yield g
            info = InfoMetricFamily("sglang:cache_config", "KV cache configuration.")
            info.add_metric([], {"page_size": str(e.profile.block_size), "num_pages": str(e.profile.num_gpu_blocks)})
            yield info
        else:
            for name, doc, value in (
                ("vllm:num_requests_running", "Number of requests in model execution batches.", running),
                ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting),
                ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage),
            ):
                g = GaugeMetricFamily(name, doc, labels=labels)
                g.add_metric(values, value)
                yield g
            if m.legacy:
                # Names removed from vLLM but still read by older routers (production-stack,
                # AIBrix); vLLM shows them with --show-hidden-metrics-for-version.
                g = GaugeMetricFamily("vllm:gpu_cache_usage_perc", "GPU KV-cache usage (deprecated name).",
                                      labels=labels)
                g.add_metric(values, usage)
                yield g
                for name, total in (("vllm:gpu_prefix_cache_queries", m._queries),
                                    ("vllm:gpu_prefix_cache_hits", m._hits)):
                    c = CounterMetricFamily(name, "Prefix cache tokens (deprecated name).", labels=labels)
                    c.add_metric(values, total)
                    yield c
            cache = GaugeMetricFamily(
                "vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                labels=["block_size", "num_gpu_blocks", "enable_prefix_caching", "cache_dtype", "engine"],
            )
            cache.add_metric([str(e.profile.block_size), str(e.profile.num_gpu_blocks), str(e.prefix_caching), "auto", "0"], 1.0)
            yield cache
            lora = GaugeMetricFamily(
                "vllm:lora_requests_info", "Running stats on lora requests.",
                labels=["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
            )
            lora.add_metric(
                [str(e.max_loras), ",".join(sorted(e.running_loras())), ",".join(e.waiting_loras())],
                time.time(),
            )
            yield lora
        lag = GaugeMetricFamily(
            "enginesim:event_loop_lag_seconds",
            "Largest event-loop lag seen in the last sampling window (real seconds).",
        )
        lag.add_metric([], m.loop_lag_source.recent_max() if m.loop_lag_source else 0.0)
        yield lag


class EngineMetrics:
    """Implements :class:`enginesim.engine.EngineObserver` and owns the registry."""

    def __init__(self, engine: Engine, model_name: str, mode: str, legacy: bool = False) -> None:
        self.engine = engine
        self.legacy = legacy and mode == "vllm"
        # llm-d-inference-sim's --fake-metrics: gauges pinned to given values (autoscaler tests).
        self.fake: dict[str, float] = {}
        self.mode = mode
        self.registry = CollectorRegistry(auto_describe=True)
        self.label_names = ["model_name", "engine"] if mode == "vllm" else ["model_name"]
        self.label_values = [model_name, "0"] if mode == "vllm" else [model_name]
        self.loop_lag_source: LoopLagMonitor | None = None
        self._queries = 0
        self._hits = 0
        self._gen_window: list[tuple[float, int]] = []
        p = "sglang:" if mode == "sglang" else "vllm:"
        ln = self.label_names

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(p + name, doc, ln, buckets=buckets, registry=self.registry)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(p + name, doc, [*ln, *extra], registry=self.registry)

        self.ttft = hist("time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.itl = FastHistogram(p + "inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                                 ITL_BUCKETS, dict(zip(ln, self.label_values, strict=True)))
        self.registry.register(self.itl)
        self.e2e = hist("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_BUCKETS)
        self.queue = hist("request_queue_time_seconds", "Histogram of time spent waiting in the queue.", REQUEST_BUCKETS)
        self.prompt_tokens = counter("prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("generation_tokens", "Number of generation tokens processed.")
        if mode == "vllm":
            self.prefill = hist("request_prefill_time_seconds", "Histogram of time spent in prefill.", REQUEST_BUCKETS)
            self.decode = hist("request_decode_time_seconds", "Histogram of time spent in decode.", REQUEST_BUCKETS)
            self.tpot = hist("request_time_per_output_token_seconds",
                             "Histogram of time per output token in seconds.", ITL_BUCKETS)
            self.prompt_len = hist("request_prompt_tokens", "Number of prefill tokens per request.", TOKEN_BUCKETS)
            self.gen_len = hist("request_generation_tokens", "Number of generation tokens per request.", TOKEN_BUCKETS)
            self.prefix_queries = counter("prefix_cache_queries", "Prefix cache queries, in terms of tokens.")
            self.prefix_hits = counter("prefix_cache_hits", "Prefix cache hits, in terms of tokens.")
            self.preemptions = counter("num_preemptions", "Cumulative number of preemptions.")
            self.success = counter("request_success", "Count of successfully processed requests.", ("finished_reason",))
        else:
            self.prefill = hist("request_prefill_time_seconds", "Histogram of time spent in prefill.", REQUEST_BUCKETS)
            self.decode = hist("request_decode_time_seconds", "Histogram of time spent in decode.", REQUEST_BUCKETS)
            self.tpot = hist("time_per_output_token_seconds", "Histogram of time per output token in seconds.",
                             ITL_BUCKETS)
            self.prompt_len = hist("prompt_tokens_histogram", "Prompt tokens per request.", TOKEN_BUCKETS)
            self.gen_len = hist("generation_tokens_histogram", "Generation tokens per request.", TOKEN_BUCKETS)
            self.prefix_queries = counter("cache_queries", "Prefix cache queries, in terms of tokens.")
            self.prefix_hits = counter("cached_tokens", "Prompt tokens served from the prefix cache.")
            self.preemptions = counter("num_retractions", "Cumulative number of retracted requests.")
            self.success = counter("num_requests", "Number of finished requests.", ("finished_reason",))
        # Like vLLM, every series exists (at zero) from the start, so scrapers see the names.
        for metric in (self.ttft, self.e2e, self.queue, self.prompt_tokens, self.generation_tokens,
                       self.prefill, self.decode, self.tpot, self.prompt_len, self.gen_len, self.prefix_queries,
                       self.prefix_hits, self.preemptions):
            metric.labels(*self.label_values)
        # Per-token hooks use the bound children directly (labels() costs a dict lookup and a lock).
        self._ttft_child = self.ttft.labels(*self.label_values)
        for reason in ("stop", "length", "abort"):
            self.success.labels(*self.label_values, reason)
        self.requests_rejected = Counter("enginesim:requests_rejected", "Requests refused, by reason.",
                                         ["reason"], registry=self.registry)
        self.kv_transfer_failures = Counter("enginesim:kv_transfer_failures",
                                            "Remote KV fetches that failed and fell back to local prefill.",
                                            registry=self.registry)
        self.kv_transfer_tokens = Counter("enginesim:kv_transfer_received_tokens",
                                          "Prompt tokens whose KV arrived from a prefill engine instead of "
                                          "being computed here.", registry=self.registry)
        self.remote_prefill_requests = Counter("enginesim:remote_prefill_requests",
                                               "Requests whose prefill was done by another engine.",
                                               registry=self.registry)
        self.registry.register(_StateCollector(self))

    def set_fake(self, values: dict[str, object]) -> None:
        """Pin gauges (``running-requests``, ``waiting-requests``, ``kv-cache-usage``); {} unpins."""
        self.fake = parse_fake_metrics(values)

    def hit_rate(self) -> float:
        return self._hits / self._queries if self._queries else 0.0

    def gen_throughput(self) -> float:
        now = self.engine.clock.now()
        self._gen_window = [(t, n) for t, n in self._gen_window if now - t <= 10.0]
        if not self._gen_window:
            return 0.0
        span = max(now - self._gen_window[0][0], 1e-9)
        return sum(n for _, n in self._gen_window) / max(span, 1.0)

    # -- observer hooks ---------------------------------------------------
    def on_prefix_lookup(self, queried_tokens: int, hit_tokens: int) -> None:
        self._queries += queried_tokens
        self._hits += hit_tokens
        self.prefix_queries.labels(*self.label_values).inc(queried_tokens)
        self.prefix_hits.labels(*self.label_values).inc(hit_tokens)

    def on_first_token(self, req: EngineRequest) -> None:
        assert req.first_token_at is not None
        self._ttft_child.observe(req.first_token_at - req.arrival)

    def on_token(self, req: EngineRequest, interval: float) -> None:
        self.itl.observe(interval)

    def on_finished(self, req: EngineRequest) -> None:
        lv = self.label_values
        assert req.finished_at is not None and req.first_token_at is not None and req.admitted_at is not None
        n_out = len(req.output_ids)
        self.e2e.labels(*lv).observe(req.finished_at - req.arrival)
        self.queue.labels(*lv).observe(req.admitted_at - req.arrival)
        self.prefill.labels(*lv).observe(req.first_token_at - req.admitted_at)
        self.decode.labels(*lv).observe(req.finished_at - req.first_token_at)
        if n_out > 1:
            self.tpot.labels(*lv).observe((req.finished_at - req.first_token_at) / (n_out - 1))
        self.prompt_len.labels(*lv).observe(len(req.prompt_ids))
        self.gen_len.labels(*lv).observe(n_out)
        self.prompt_tokens.labels(*lv).inc(len(req.prompt_ids))
        self.generation_tokens.labels(*lv).inc(n_out)
        self.success.labels(*lv, req.finish_reason or "abort").inc()
        if req.num_transferred_tokens:
            self.kv_transfer_tokens.inc(req.num_transferred_tokens)
        if req.remote_prefill:
            self.remote_prefill_requests.inc()
        self._gen_window.append((req.finished_at, n_out))
        if len(self._gen_window) > 10_000:
            del self._gen_window[:5_000]

    def on_aborted(self, req: EngineRequest) -> None:
        self.success.labels(*self.label_values, "abort").inc()

    def on_preemption(self, req: EngineRequest) -> None:
        self.preemptions.labels(*self.label_values).inc()
