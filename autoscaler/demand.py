"""Demand to provision for: a forecast over the start-up delay plus a margin for the noise,
with level shifts (a burst starting or ending) followed at once.

Replicas asked for now serve only after their start-up delay, so the need is the Kalman
local-linear-trend forecast `lead` steps ahead, plus `z` standard deviations of the noise,
plus a relative `headroom`; the result is the maximum over the last `hold` steps, so a dip
has to last before capacity is released.

Two kinds of change need opposite treatment. Noise around a level should move the fleet
as little as possible: the filter is a smooth one (its gain is about 0.1), and the margin
covers what it does not follow. A burst that starts or ends is a level shift: an
observation more than `jump` standard deviations from the one-step forecast restarts the
filter at that observation, so the need follows a burst up in one step and releases its
capacity as soon as it has gone, instead of the filter creeping there over tens of steps.
Shifts are kept out of the noise estimate.

* The noise is 1.4826 x the median absolute one-step error over the last `window` calm
  steps (robust: a burst's ramp does not widen the margin for long). Until
  `prior_samples` calm errors are known, a prior of `prior_noise` x the level stands in
  for it and fades out linearly (a history that was constant says nothing about noise).
* The trend is extrapolated upwards only: a falling trend never releases capacity before
  the demand has fallen (scale-down waits for data; scale-up may run ahead of it).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from autoscaler.sla import KalmanPredictor


def smooth_kalman() -> KalmanPredictor:
    # Process noise a hundredth of the observation noise: the steady gain is about 0.1.
    return KalmanPredictor(q_level=0.1, q_trend=0.01, r=9.0, min_points=3)


@dataclass
class DemandEstimator:
    lead: int = 3
    z: float = 2.0
    hold: int = 2
    headroom: float = 0.0
    window: int = 60
    jump: float = 3.0
    prior_noise: float = 0.1
    prior_samples: int = 90
    min_noise: float = 0.025
    kalman: KalmanPredictor = field(default_factory=smooth_kalman)
    shifts: int = 0  # level shifts seen (for explanations and tests)
    _errors: deque[float] = field(default_factory=deque)  # of the forecast provisioned for
    _innovations: deque[float] = field(default_factory=deque)  # of the one-step forecast
    _calm: int = 0
    _expected: float | None = None
    _provisioned: float | None = None
    _needs: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.lead < 0 or self.hold < 1:
            raise ValueError(f"lead must be >= 0 and hold >= 1, got {self.lead} and {self.hold}")
        if self.z < 0 or self.headroom < 0:
            raise ValueError("z and headroom must be >= 0")
        if self.window < 1 or self.prior_samples < 0 or self.prior_noise < 0:
            raise ValueError("window must be >= 1, prior_samples and prior_noise >= 0")
        if not self.jump > 0:
            raise ValueError(f"jump must be > 0 standard deviations, got {self.jump}")

    def observe(self, value: float) -> float:
        """Record one step's demand; returns the demand to provision for now."""
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"demand must be a finite number >= 0, got {value}")
        expected = self._expected
        noise = self.noise
        if expected is not None and noise > 0 and abs(value - expected) > self.jump * noise:
            self.kalman.restart(value)
            self.shifts += 1
        else:
            if expected is not None and self._provisioned is not None:
                self._calm += 1
                for window, error in ((self._innovations, value - expected), (self._errors, value - self._provisioned)):
                    window.append(abs(error))
                    while len(window) > self.window:
                        window.popleft()
            self.kalman.observe(value)
        self._expected = self.kalman.forecast(1)
        level = self.kalman.forecast(0)
        ahead = self.kalman.forecast(self.lead)
        base = max(level if level is not None else value, ahead if ahead is not None else value)
        self._provisioned = base
        need = base * (1 + self.headroom) + self.z * self.sigma
        self._needs.append(need)
        while len(self._needs) > self.hold:
            self._needs.popleft()
        return max(self._needs)

    @property
    def sigma(self) -> float:
        """Standard deviation of the error of the forecast provisioned for (the margin's unit)."""
        return max(_robust_sd(self._errors), self._prior)

    @property
    def noise(self) -> float:
        """Standard deviation of the one-step error (the unit a level shift is measured in)."""
        return max(_robust_sd(self._innovations), self._prior, self.min_noise * (self.kalman.forecast(0) or 0.0))

    @property
    def _prior(self) -> float:
        if not self.prior_samples:
            return 0.0
        return self.prior_noise * (self.kalman.forecast(0) or 0.0) * max(0.0, 1 - self._calm / self.prior_samples)


def _robust_sd(errors: deque[float]) -> float:
    return 1.4826 * statistics.median(errors) if errors else 0.0
