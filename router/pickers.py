"""Pickers order the candidates from their weighted scores; the first is used."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class MaxScorePicker:
    """Highest total first; equal totals in random order so ties never hot-spot one pod."""

    name: str = "max-score"
    rng: random.Random = field(default_factory=random.Random)
    epsilon: float = 1e-9

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]:
        keyed = [(round(t / self.epsilon) * self.epsilon, self.rng.random(), i) for i, t in enumerate(totals)]
        keyed.sort(key=lambda k: (-k[0], k[1]))
        return [endpoints[i] for _, _, i in keyed]


@dataclass
class WeightedRandomPicker:
    """Sampling without replacement with probability ~ score (A-Res: key = U^(1/w))."""

    name: str = "weighted-random"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]:
        keys = []
        for i, w in enumerate(totals):
            u = self.rng.random()
            keys.append((u ** (1.0 / w) if w > 0 else -u, i))
        keys.sort(reverse=True)
        return [endpoints[i] for _, i in keys]


@dataclass
class SoftmaxPicker:
    """Dynamo's temperature sampling: normalise totals, p ~ exp(total / T); T=0 is max-score."""

    name: str = "softmax"
    temperature: float = 0.1
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]:
        if self.temperature <= 0:
            return MaxScorePicker(rng=self.rng).pick(ctx, endpoints, totals)
        lo, hi = min(totals), max(totals)
        span = hi - lo or 1.0
        weights = [math.exp(((t - lo) / span - 1.0) / self.temperature) for t in totals]
        return WeightedRandomPicker(rng=self.rng).pick(ctx, endpoints, weights)


@dataclass
class RandomPicker:
    name: str = "random"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]:
        out = list(endpoints)
        self.rng.shuffle(out)
        return out


@dataclass
class RoundRobinPicker:
    name: str = "round-robin"
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]:
        ordered = sorted(endpoints, key=lambda e: e.name)
        start = next(self._counter) % len(ordered)
        return ordered[start:] + ordered[:start]
