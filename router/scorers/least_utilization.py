"""AIBrix's least-utilization and least-busy-time: the pod with the lowest engine busy ratio.

Both read one gauge, the engine's utilization / GPU busy-time ratio (0..1): xLLM exports it as
`engine_utilization`; vLLM and SGLang export none (AIBrix's least-busy-time reads a mock). Pods
reporting it are min-max inverted; as in AIBrix, pods that do not report it are never preferred
over ones that do (score 0), and when none reports it every pod scores 1 (a random pick).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext, min_max_inverse


@dataclass
class LeastUtilizationScorer:
    name: str = "least-utilization"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        known = [(i, e.metrics.busy_ratio) for i, e in enumerate(endpoints) if e.metrics.busy_ratio is not None]
        if not known:
            return [1.0] * len(endpoints)
        scores = [0.0] * len(endpoints)
        for (i, _), s in zip(known, min_max_inverse([v for _, v in known if v is not None]), strict=True):
            scores[i] = s
        return scores


@dataclass
class LeastBusyTimeScorer(LeastUtilizationScorer):
    """AIBrix's least-busy-time: the same gauge under its own name."""

    name: str = "least-busy-time"
