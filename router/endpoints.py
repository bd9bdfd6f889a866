"""Endpoint state: what the router knows about each engine pod.

Two sources feed it: scraped engine metrics (lagging by up to one scrape interval) and the
router's own in-flight accounting, updated synchronously on every routed request so that
scorers see load between scrapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class EngineMetrics:
    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float = 0.0  # 0..1
    ttft_s: float | None = None  # mean over the last scrape interval
    tpot_s: float | None = None
    # Interval means for AIBrix's least-latency / throughput (None until the engine reports them).
    queue_time_s: float | None = None
    prefill_time_s: float | None = None
    decode_time_s: float | None = None
    prompt_tokens_per_req: float | None = None
    gen_tokens_per_req: float | None = None
    cpu_kv_usage: float = 0.0  # 0..1, CPU (swap/offload) KV usage where the engine reports it
    busy_ratio: float | None = None  # 0..1 engine utilization / GPU busy-time ratio (xLLM's gauge)
    block_size: int | None = None
    num_gpu_blocks: int | None = None
    max_lora: int | None = None
    running_loras: frozenset[str] = frozenset()
    waiting_loras: frozenset[str] = frozenset()
    prefix_hits: float = 0.0  # counters, tokens
    prefix_queries: float = 0.0
    scraped_at: float = 0.0
    hist_totals: dict[str, float] = field(default_factory=dict)  # raw _sum/_count, for deltas


@dataclass
class Endpoint:
    """One engine pod (or one static backend)."""

    name: str
    address: str  # host:port
    server: str  # ModelServer key namespace/name
    engine: str = "vLLM"
    labels: Mapping[str, str] = field(default_factory=dict)
    role: str | None = None  # "prefill" | "decode" | None
    pd_group: str | None = None  # value of the pdGroup groupKey label
    kv_events: str | None = None  # ZMQ publisher endpoint, e.g. tcp://127.0.0.1:5557
    kv_replay: str | None = None  # ZMQ replay (ROUTER) endpoint
    bootstrap_port: int | None = None  # SGLang disaggregation bootstrap port
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    loaded_loras: frozenset[str] = frozenset()  # from GET /v1/models
    inflight_requests: int = 0
    inflight_tokens: int = 0  # KV tokens in-flight requests add: uncached prompt + expected output
    inflight_prefill_tokens: int = 0  # uncached prompt tokens not yet past their first token
    healthy: bool = True
    last_cold_seq: int = 0  # when this pod last got a cold (no prefix hit) request, as a sequence; 0 = never

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    def has_lora(self, name: str) -> bool:
        return name in self.loaded_loras or name in self.metrics.running_loras \
            or name in self.metrics.waiting_loras

    def begin(self, tokens: int, prefill_tokens: int) -> None:
        self.inflight_requests += 1
        self.inflight_tokens += tokens
        self.inflight_prefill_tokens += prefill_tokens

    def first_token(self, prefill_tokens: int) -> None:
        self.inflight_prefill_tokens = max(0, self.inflight_prefill_tokens - prefill_tokens)

    def end(self, tokens: int) -> None:
        self.inflight_requests = max(0, self.inflight_requests - 1)
        self.inflight_tokens = max(0, self.inflight_tokens - tokens)

    def snapshot(self) -> dict[str, object]:
        m = self.metrics
        return {
            "name": self.name, "address": self.address, "server": self.server, "engine": self.engine,
            "role": self.role, "pdGroup": self.pd_group, "kvEvents": self.kv_events, "healthy": self.healthy,
            "inflightRequests": self.inflight_requests, "inflightTokens": self.inflight_tokens,
            "inflightPrefillTokens": self.inflight_prefill_tokens, "loras": sorted(self.loaded_loras),
            "metrics": {"running": m.running, "waiting": m.waiting, "kvUsage": m.kv_usage, "ttft": m.ttft_s,
                        "tpot": m.tpot_s, "blockSize": m.block_size, "numGpuBlocks": m.num_gpu_blocks,
                        "runningLoras": sorted(m.running_loras), "scrapedAt": m.scraped_at},
        }
