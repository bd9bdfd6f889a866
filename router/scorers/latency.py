"""Observed latency: a·TTFT score + (1 - a)·TPOT score, each min-max normalised.

Pods without data yet get 0.5 (as Kthena's least-latency).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


def _norm(values: Sequence[float | None]) -> list[float]:
    known = [v for v in values if v is not None]
    if not known:
        return [0.5] * len(values)
    lo, hi = min(known), max(known)
    return [0.5 if v is None else (1.0 if hi <= lo else (hi - v) / (hi - lo)) for v in values]


@dataclass
class LatencyScorer:
    name: str = "latency"
    ttft_weight: float = 0.5

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        ttft = _norm([e.metrics.ttft_s for e in endpoints])
        tpot = _norm([e.metrics.tpot_s for e in endpoints])
        a = self.ttft_weight
        return [a * t + (1 - a) * p for t, p in zip(ttft, tpot, strict=True)]
