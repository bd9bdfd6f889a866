"""Capacity per replica learned online from observed throughput.

Throughput per ready replica is the capacity only while the variant is saturated
(requests are waiting); otherwise it is a lower bound. The estimate starts at the
policy's target and follows saturated observations with an exponential moving average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CapacityEstimate:
    value: float
    samples: int = 0

    def __post_init__(self) -> None:
        if not self.value > 0:
            raise ValueError(f"capacity must be > 0, got {self.value}")


def update_capacity(estimate: CapacityEstimate, throughput: float | None, ready: int, saturated: bool,
                    alpha: float = 0.2) -> CapacityEstimate:
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be within (0, 1], got {alpha}")
    if throughput is None or ready <= 0 or not math.isfinite(throughput) or throughput < 0:
        return estimate
    per_replica = throughput / ready
    if saturated and per_replica > 0:
        return CapacityEstimate(estimate.value + alpha * (per_replica - estimate.value), estimate.samples + 1)
    if per_replica > estimate.value:
        # Unsaturated replicas already carry more than we thought: raise the floor.
        return CapacityEstimate(per_replica, estimate.samples + 1)
    return estimate
