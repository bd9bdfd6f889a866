"""Demand to provision for: a forecast over the start-up delay plus a margin sized by how
wrong the forecasts have been, held for a while before it may fall.

Replicas asked for now serve only after their start-up delay, so the need is the Kalman
local-linear-trend forecast `lead` steps ahead (never below the last observation), plus
`z` standard deviations of the one-step forecast error (robust: 1.4826 x the median
absolute error of the last `window` steps, so a burst does not inflate the margin for
long), plus a relative `headroom`; the result is the maximum over the last `hold`
steps, so a dip has to last before capacity is released.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from autoscaler.sla import KalmanPredictor


@dataclass
class DemandEstimator:
    lead: int = 3
    z: float = 1.5
    hold: int = 5
    headroom: float = 0.0
    window: int = 30
    kalman: KalmanPredictor = field(
        default_factory=lambda: KalmanPredictor(q_level=4.0, q_trend=0.5, r=9.0, min_points=3))
    _errors: deque[float] = field(default_factory=deque)
    _expected: float | None = None
    _needs: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.lead < 0 or self.hold < 1:
            raise ValueError(f"lead must be >= 0 and hold >= 1, got {self.lead} and {self.hold}")
        if self.z < 0 or self.headroom < 0:
            raise ValueError("z and headroom must be >= 0")

    def observe(self, value: float) -> float:
        """Record one step's demand; returns the demand to provision for now."""
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"demand must be a finite number >= 0, got {value}")
        if self._expected is not None:
            self._errors.append(abs(value - self._expected))
            while len(self._errors) > self.window:
                self._errors.popleft()
        self.kalman.observe(value)
        self._expected = self.kalman.forecast(1)
        ahead = self.kalman.forecast(self.lead)
        base = max(value, ahead if ahead is not None else value)
        need = base * (1 + self.headroom) + self.z * self.sigma
        self._needs.append(need)
        while len(self._needs) > self.hold:
            self._needs.popleft()
        return max(self._needs)

    @property
    def sigma(self) -> float:
        return 1.4826 * statistics.median(self._errors) if self._errors else 0.0
