"""The router's own in-flight load per pod, fresh on every request (scraped gauges lag).

`by="requests"` counts requests; `by="tokens"` counts prompt + expected output tokens.
The score is 1 - load/(max load + 1): smooth, so a one-request difference does not
swamp cache affinity the way min-max normalisation would, yet the idlest pod still wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class InflightScorer:
    name: str = "inflight"
    by: str = "requests"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        if self.by == "tokens":
            loads = [float(e.inflight_tokens) for e in endpoints]
        else:
            loads = [float(e.inflight_requests) for e in endpoints]
        top = max(loads, default=0.0)
        if top <= 0:
            return [1.0] * len(endpoints)
        unit = 1.0 if self.by == "requests" else max(1.0, float(ctx.prompt_tokens))
        return [1.0 - load / (top + unit) for load in loads]
