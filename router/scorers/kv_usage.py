"""KV-cache headroom: 1 - KV usage, as reported by the engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class KVUsageScorer:
    name: str = "kv-usage"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        return [1.0 - min(1.0, max(0.0, e.metrics.kv_usage)) for e in endpoints]
