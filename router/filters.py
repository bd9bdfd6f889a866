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
class LoraFilter:
    """For a LoRA request, keep pods that have the adapter loaded, if any do."""

    name: str = "lora"

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        if ctx.lora is None:
            return list(endpoints)
        kept = [e for e in endpoints if e.has_lora(ctx.lora)]
        return kept or list(endpoints)
