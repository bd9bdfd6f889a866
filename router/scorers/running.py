"""Engine running requests, min-max normalised over the candidates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext, min_max_inverse


@dataclass
class RunningScorer:
    name: str = "running"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        return min_max_inverse([e.metrics.running for e in endpoints])
