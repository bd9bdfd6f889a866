"""Pickers order the candidates from their weighted scores; the first is used."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import xxhash

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


@dataclass
class PowerOfTwoPicker:
    """SGLang's power_of_two: sample two distinct candidates, take the better of the two.

    "Better" is the higher weighted total (give the profile a load scorer, e.g. `inflight`,
    as SGLang compares load); equal totals go to fewer router in-flight requests, then at random.
    The loser comes second and the rest follow in random order (the retry fallback).
    """

    name: str = "power-of-two"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]:
        order = list(range(len(endpoints)))
        self.rng.shuffle(order)
        if len(order) >= 2:
            a, b = order[0], order[1]
            if (-totals[b], endpoints[b].inflight_requests) < (-totals[a], endpoints[a].inflight_requests):
                order[0], order[1] = b, a
        return [endpoints[i] for i in order]


def _hash64(text: str) -> int:
    return xxhash.xxh64_intdigest(text.encode())


@dataclass
class ConsistentHashPicker:
    """Session affinity on a hash ring: SGLang's consistent_hashing, vLLM router's consistent
    hash by session/user key, production-stack's `session` routing.

    The key is the first of `headers` present on the request, else the first of `body_keys`
    present as a non-empty string in the JSON body (OpenAI's `user` field by default). Each
    endpoint owns `virtual_nodes` points on an xxh64 ring, so adding or removing a pod moves only
    about 1/n of the keys. The order is the ring walk from the key's point (the next distinct pods
    are the fallback). With no key, the pod with the fewest router in-flight requests comes first
    (production-stack: lowest QPS), ties at random.
    """

    name: str = "consistent-hash"
    headers: tuple[str, ...] = ("x-session-id", "x-user-id")
    body_keys: tuple[str, ...] = ("session_id", "user")
    virtual_nodes: int = 160
    rng: random.Random = field(default_factory=random.Random)
    _rings: dict[tuple[str, ...], tuple[list[int], list[str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.virtual_nodes < 1:
            raise ValueError(f"virtual_nodes: must be >= 1, got {self.virtual_nodes!r}")
        self.headers = tuple(h.lower() for h in self.headers)
        self.body_keys = tuple(self.body_keys)

    def key(self, ctx: SchedulingContext) -> str | None:
        headers = ctx.request.headers
        for h in self.headers:
            value = headers.get(h)
            if value:
                return str(value)
        body = ctx.request.body
        for k in self.body_keys:
            value = body.get(k)
            if isinstance(value, str) and value:
                return value
        return None

    def _ring(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        ring = self._rings.get(names)
        if ring is None:
            points = sorted((_hash64(f"{name}#{v}"), name) for name in names for v in range(self.virtual_nodes))
            ring = ([p for p, _ in points], [n for _, n in points])
            if len(self._rings) > 64:  # candidate sets change with scaling; keep only recent rings
                self._rings.clear()
            self._rings[names] = ring
        return ring

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]:
        key = self.key(ctx)
        if key is None:
            keyed = sorted((e.inflight_requests, self.rng.random(), i) for i, e in enumerate(endpoints))
            return [endpoints[i] for _, _, i in keyed]
        by_name = {e.name: e for e in endpoints}
        points, owners = self._ring(tuple(sorted(by_name)))
        start = bisect.bisect_left(points, _hash64(key))
        ordered: list[Endpoint] = []
        seen: set[str] = set()
        for j in range(len(points)):
            name = owners[(start + j) % len(points)]
            if name not in seen:
                seen.add(name)
                ordered.append(by_name[name])
                if len(ordered) == len(by_name):
                    break
        return ordered
