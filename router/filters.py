"""Filters keep endpoints; each fails open (keeps all) rather than leave nothing to pick."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class HealthyFilter:
    """Drop pods whose last metrics scrape failed."""

    name: str = "healthy"

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        kept = [e for e in endpoints if e.healthy]
        return kept or list(endpoints)


@dataclass
class BusyFilter:
    """Drop pods past busy thresholds (engine queue, KV usage) while others are not.

    Metrics older than `staleness_s` are ignored (fail open), as llm-d's utilization detector.
    """

    name: str = "busy"
    max_waiting: float = 10
    max_kv_usage: float = 0.95
    staleness_s: float = 5.0

    def busy(self, e: Endpoint, now: float) -> bool:
        m = e.metrics
        if now - m.scraped_at > self.staleness_s:
            return False
        return m.waiting >= self.max_waiting or m.kv_usage >= self.max_kv_usage

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        now = time.time()
        kept = [e for e in endpoints if not self.busy(e, now)]
        return kept or list(endpoints)


@dataclass
class ImbalanceFilter:
    """Drop pods whose router in-flight requests run far ahead of the least loaded pod.

    Cache affinity outweighs load in the default profile, so without a guard a hot prefix
    would pile onto one pod. As SGLang's cache-aware policy, a pod is too far ahead when it
    leads the least loaded one by more than `abs_threshold` requests *and* by more than
    `rel_threshold` times; its requests then go to the best of the rest, which replicates
    the hot prefix there. Below the thresholds, load differences are left to the scorers:
    a miss costs a full prefill plus other prefixes' evictions, which a small lead does not.
    """

    name: str = "imbalance"
    abs_threshold: float = 16
    rel_threshold: float = 1.5

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        if len(endpoints) < 2:
            return list(endpoints)
        low = min(e.inflight_requests for e in endpoints)
        limit = max(low + self.abs_threshold, low * self.rel_threshold)
        return [e for e in endpoints if e.inflight_requests <= limit]


@dataclass
class LeastLoadedIfImbalancedFilter:
    """SGLang's cache-aware load guard: when the router's in-flight requests are imbalanced, keep
    only the least loaded pods; otherwise keep all.

    Imbalanced means max - min > `abs_threshold` *and* max > min x `rel_threshold` over the
    candidates (SGLang's balance_abs_threshold 64 and balance_rel_threshold 1.5 by default).
    Unlike `imbalance`, which only drops the pods far ahead, this sends the request to the
    shortest queue, as SGLang does.
    """

    name: str = "imbalance-least-loaded"
    abs_threshold: float = 64
    rel_threshold: float = 1.5

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        if len(endpoints) < 2:
            return list(endpoints)
        loads = [e.inflight_requests for e in endpoints]
        low, high = min(loads), max(loads)
        if high - low > self.abs_threshold and high > low * self.rel_threshold:
            return [e for e in endpoints if e.inflight_requests == low]
        return list(endpoints)


@dataclass
class LoraFilter:
    """For a LoRA request, keep pods that have the adapter loaded, if any do."""

    name: str = "lora"

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        if ctx.lora is None:
            return list(endpoints)
        kept = [e for e in endpoints if e.has_lora(ctx.lora)]
        return kept or list(endpoints)


@dataclass
class PrefixCacheAffinityFilter:
    """llm-d's prefix-cache-affinity-filter: stay on cache-warm pods until they saturate.

    Pods whose cached fraction of the prompt (the larger of the precise and approximate index)
    is at least `affinity_threshold` are sticky; when any pod is sticky only sticky pods are kept.
    With probability `exploration_probability` all pods are kept, so other pods keep learning the
    prefix. Stickiness breaks (all pods kept) when the best sticky pod's predicted TTFT exceeds the
    best non-sticky pod's by more than `max_ttft_penalty_ms` (0 disables the gate).

    Predicted TTFT is llm-d's throughput mode: the pod's prefill backlog, the uncached prompt
    tokens of requests the router sent there that have not produced a first token, plus this
    request's uncached tokens on that pod, over `peak_prefill_tokens_per_s` (llm-d's default,
    calibrated for Qwen3-32B TP2 on H100; set it to the engine's prefill rate). The router's own
    counts are fresh on every request, whereas scraped queue and TTFT means lag a scrape interval
    and describe requests already served, so they are not used here.
    """

    name: str = "prefix-cache-affinity"
    affinity_threshold: float = 0.80
    exploration_probability: float = 0.01
    max_ttft_penalty_ms: float = 5000.0
    peak_prefill_tokens_per_s: float = 15928.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if not 0.0 <= self.affinity_threshold <= 1.0:
            raise ValueError(f"affinity_threshold: must be within [0, 1], got {self.affinity_threshold!r}")
        if not 0.0 <= self.exploration_probability <= 1.0:
            raise ValueError(f"exploration_probability: must be within [0, 1], got {self.exploration_probability!r}")
        if not self.max_ttft_penalty_ms >= 0:
            raise ValueError(f"max_ttft_penalty_ms: must be >= 0, got {self.max_ttft_penalty_ms!r}")
        if not self.peak_prefill_tokens_per_s > 0:
            raise ValueError(f"peak_prefill_tokens_per_s: must be > 0, got {self.peak_prefill_tokens_per_s!r}")

    def predicted_ttft_ms(self, ctx: SchedulingContext, e: Endpoint, cached: float) -> float:
        tokens = e.inflight_prefill_tokens + ctx.prompt_tokens * (1.0 - cached)
        return 1000.0 * tokens / self.peak_prefill_tokens_per_s

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        if len(endpoints) < 2 or self.rng.random() < self.exploration_probability:
            return list(endpoints)
        cached = [ctx.cached_fraction(e) for e in endpoints]
        sticky = [i for i, c in enumerate(cached) if c >= self.affinity_threshold]
        if not sticky or len(sticky) == len(endpoints):
            return list(endpoints)
        if self.max_ttft_penalty_ms > 0:
            chosen = set(sticky)
            best_sticky = min(self.predicted_ttft_ms(ctx, endpoints[i], cached[i]) for i in sticky)
            best_other = min(self.predicted_ttft_ms(ctx, e, cached[i])
                             for i, e in enumerate(endpoints) if i not in chosen)
            if best_sticky - best_other > self.max_ttft_penalty_ms:
                return list(endpoints)
        return [endpoints[i] for i in sticky]
