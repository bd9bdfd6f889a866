"""Approximate prefix-cache affinity: leading prompt blocks the router sent to each pod."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class PrefixCacheScorer:
    name: str = "prefix-cache"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        total = len(ctx.approx_hashes)
        if total == 0:
            return [0.0] * len(endpoints)
        match = ctx.approx_match
        return [match.get(e.name, 0) / total for e in endpoints]
