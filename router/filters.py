"""Filters keep endpoints; each fails open (keeps all) rather than leave nothing to pick."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

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
class LoraFilter:
    """For a LoRA request, keep pods that have the adapter loaded, if any do."""

    name: str = "lora"

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        if ctx.lora is None:
            return list(endpoints)
        kept = [e for e in endpoints if e.has_lora(ctx.lora)]
        return kept or list(endpoints)
