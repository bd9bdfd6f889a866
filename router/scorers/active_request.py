"""llm-d's active-request-scorer over the router's own in-flight requests per pod.

A pod with at most `idle_threshold` requests in flight scores 1.0; a busier one scores
(max - count)/max · `max_busy_score`, with max the largest count among the candidates.
So `max_busy_score` < 1 keeps every busy pod strictly below every idle one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class ActiveRequestScorer:
    name: str = "active-request"
    idle_threshold: int = 0
    max_busy_score: float = 1.0

    def __post_init__(self) -> None:
        if self.idle_threshold < 0:
            raise ValueError(f"idle_threshold: must be >= 0, got {self.idle_threshold!r}")
        if not 0.0 <= self.max_busy_score <= 1.0:
            raise ValueError(f"max_busy_score: must be within [0, 1], got {self.max_busy_score!r}")

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        top = max((e.inflight_requests for e in endpoints), default=0)
        idle, busy = self.idle_threshold, self.max_busy_score
        return [1.0 if e.inflight_requests <= idle or top <= 0 else (top - e.inflight_requests) / top * busy
                for e in endpoints]
