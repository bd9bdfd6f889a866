"""Engine queue depth (waiting requests), min-max normalised over the candidates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext, min_max_inverse


@dataclass
class QueueScorer:
    name: str = "queue"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        return min_max_inverse([e.metrics.waiting for e in endpoints])
