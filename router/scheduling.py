"""Endpoint picking as EPP-style profiles: filters -> weighted scorers -> picker.

A Filter keeps endpoints; a Scorer returns one score in [0, 1] per endpoint; a Picker orders
the candidates from the weighted sum (the first is used, the rest are the fallback order).
Nothing here knows about HTTP. Every decision carries its per-plugin scores so it can be
logged and explained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from router.endpoints import Endpoint
from router.kvindex.approximate import ApproximateIndex
from router.kvindex.precise import KVEventIndex
from router.request import ParsedRequest

TokenizeFn = Callable[[ParsedRequest], list[int]]


@dataclass
class Signals:
    """Router-wide state shared by scorers: the prefix indexes and the tokenizer."""

    approx: ApproximateIndex = field(default_factory=ApproximateIndex)
    precise: KVEventIndex = field(default_factory=KVEventIndex)
    tokenize: TokenizeFn | None = None
    precise_max_blocks: int = 1024


@dataclass
class SchedulingContext:
    """One request's scheduling cycle; expensive derived data is computed once, lazily."""

    request: ParsedRequest
    model: str
    lora: str | None
    signals: Signals
    _approx_hashes: list[int] | None = None
    _approx_match: dict[str, int] | None = None
    _token_ids: list[int] | None = None
    _precise_keys: list[int] | None = None
    _precise_match: dict[str, int] | None = None

    @property
    def approx_hashes(self) -> list[int]:
        if self._approx_hashes is None:
            text = self.request.prompt_text
            if not text and self.request.prompt_token_ids:
                text = ",".join(map(str, self.request.prompt_token_ids))
            self._approx_hashes = self.signals.approx.block_hashes(self.lora or self.model, text)
        return self._approx_hashes

    @property
    def approx_match(self) -> dict[str, int]:
        if self._approx_match is None:
            self._approx_match = self.signals.approx.match(self.approx_hashes)
        return self._approx_match

    @property
    def token_ids(self) -> list[int] | None:
        if self._token_ids is None:
            if self.request.prompt_token_ids is not None:
                self._token_ids = self.request.prompt_token_ids
            elif self.signals.tokenize is not None:
                self._token_ids = self.signals.tokenize(self.request)
        return self._token_ids

    @property
    def precise_keys(self) -> list[int]:
        if self._precise_keys is None:
            tokens = self.token_ids
            self._precise_keys = [] if tokens is None else self.signals.precise.request_keys(
                tokens, self.lora, self.signals.precise_max_blocks)
        return self._precise_keys

    @property
    def precise_match(self) -> dict[str, int]:
        if self._precise_match is None:
            self._precise_match = self.signals.precise.match(self.precise_keys)
        return self._precise_match

    @property
    def prompt_tokens(self) -> int:
        tokens = self.token_ids if self.signals.tokenize is not None else self.request.prompt_token_ids
        return len(tokens) if tokens is not None else self.request.estimated_prompt_tokens

    def cached_fraction(self, endpoint: Endpoint) -> float:
        """Best estimate of the fraction of this prompt the endpoint has (or will have) cached."""
        precise = self.precise_match.get(endpoint.name, 0) / len(self.precise_keys) if self.precise_keys else 0.0
        approx = self.approx_match.get(endpoint.name, 0) / len(self.approx_hashes) if self.approx_hashes else 0.0
        return max(precise, approx)


class Filter(Protocol):
    name: str

    def filter(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[Endpoint]: ...


class Scorer(Protocol):
    name: str

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]: ...


class Picker(Protocol):
    name: str

    def pick(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint],
             totals: Sequence[float]) -> list[Endpoint]: ...


@dataclass
class WeightedScorer:
    scorer: Scorer
    weight: float


@dataclass
class Decision:
    """The ordered candidates and why: per-scorer scores and totals by endpoint name."""

    ordered: list[Endpoint]
    scores: dict[str, dict[str, float]]
    totals: dict[str, float]
    filtered_out: dict[str, list[str]]
    durations_s: dict[str, float]

    @property
    def chosen(self) -> Endpoint:
        return self.ordered[0]

    def explain(self) -> dict[str, object]:
        return {"chosen": self.chosen.name, "order": [e.name for e in self.ordered],
                "totals": self.totals, "scores": self.scores, "filteredOut": self.filtered_out}


@dataclass
class Profile:
    name: str
    filters: list[Filter]
    scorers: list[WeightedScorer]
    picker: Picker

    def __post_init__(self) -> None:
        # Metric labels per plugin, built once: run() is on every request's path.
        self._filter_keys = [f"filter/{f.name}" for f in self.filters]
        self._scorer_keys = [f"scorer/{ws.scorer.name}" for ws in self.scorers]
        self._picker_key = f"picker/{self.picker.name}"

    def run(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> Decision | None:
        """None when no endpoint is left to choose from."""
        clock = time.perf_counter
        durations: dict[str, float] = {}
        dropped: dict[str, list[str]] = {}
        candidates = list(endpoints)
        for f, key in zip(self.filters, self._filter_keys, strict=True):
            t0 = clock()
            kept = f.filter(ctx, candidates)
            durations[key] = clock() - t0
            if len(kept) < len(candidates):
                names = {e.name for e in kept}
                dropped[f.name] = [e.name for e in candidates if e.name not in names]
            candidates = kept
        if not candidates:
            return None
        n = len(candidates)
        names_ = [e.name for e in candidates]
        totals = [0.0] * n
        per: dict[str, dict[str, float]] = {name: {} for name in names_}
        for ws, key in zip(self.scorers, self._scorer_keys, strict=True):
            t0 = clock()
            scores = ws.scorer.score(ctx, candidates)
            durations[key] = clock() - t0
            if len(scores) != n:
                raise ValueError(f"scorer {ws.scorer.name} returned {len(scores)} scores for {n} endpoints")
            scorer, weight = ws.scorer.name, ws.weight
            for i, s in enumerate(scores):
                s = 1.0 if s >= 1.0 else (s if s > 0.0 else 0.0)  # clamp to [0, 1]; NaN counts as 0
                per[names_[i]][scorer] = s
                totals[i] += weight * s
        t0 = clock()
        ordered = self.picker.pick(ctx, candidates, totals)
        durations[self._picker_key] = clock() - t0
        return Decision(ordered=ordered, scores=per, totals=dict(zip(names_, totals, strict=True)),
                        filtered_out=dropped, durations_s=durations)


def min_max_inverse(values: Sequence[float]) -> list[float]:
    """(max - x)/(max - min): the least loaded gets 1, the most 0; all 1 when equal."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [1.0] * len(values)
    return [(hi - v) / (hi - lo) for v in values]
