"""Precise prefix-cache affinity from the engines' KV events (falls back to approximate).

The fallback keeps affinity working for pods or models without an event stream, or when no
tokenizer is configured for the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class KVEventsScorer:
    name: str = "kv-events"
    fallback_to_approximate: bool = True

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        keys = ctx.precise_keys
        if keys:
            match = ctx.precise_match
            return [match.get(e.name, 0) / len(keys) for e in endpoints]
        if self.fallback_to_approximate and ctx.approx_hashes:
            total = len(ctx.approx_hashes)
            amatch = ctx.approx_match
            return [amatch.get(e.name, 0) / total for e in endpoints]
        return [0.0] * len(endpoints)
