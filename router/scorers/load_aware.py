"""llm-d's load-aware-scorer over the engine's waiting queue.

An empty queue scores 0.5; a queue of q scores 0.5·(1 - min(q, T)/T), reaching 0 at the
threshold T (default 128). Idle pods never score above 0.5: llm-d reserves the upper half
for pods known to have spare capacity, which the queue gauge cannot tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class LoadAwareScorer:
    name: str = "load-aware"
    threshold: float = 128

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ValueError(f"threshold: must be > 0, got {self.threshold!r}")

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        t = self.threshold
        return [0.5 if e.metrics.waiting <= 0 else 0.5 * (1.0 - min(e.metrics.waiting, t) / t) for e in endpoints]
