"""Role-level scaling: prefill and decode of one ModelServing, each from its own metrics,
kept within a prefill:decode ratio.

Each role runs its own KPA (own windows, own panic state). The pair is then repaired to
the ratio exactly: among all counts within the role bounds whose ratio is within
``[minRatio, maxRatio]``, take the one that (1) leaves no role below what its own
metrics asked for if possible, (2) adds the fewest replicas, (3) moves least from the
recommendation. Both roles at zero is allowed (they scale to zero together).
Kthena's repair raises one role and only lowers the other when a bound blocks; this
search finds the same answer when that works and a feasible one when it does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from autoscaler.kpa import Decision, KpaConfig, KpaState, Tick, recommend


@dataclass(frozen=True)
class RatioConstraint:
    numerator: str
    denominator: str
    min_ratio: float
    max_ratio: float

    def __post_init__(self) -> None:
        if self.numerator == self.denominator:
            raise ValueError("ratioConstraint: numeratorRole and denominatorRole must differ")
        if not 0 < self.min_ratio <= self.max_ratio:
            raise ValueError(f"ratioConstraint: need 0 < minRatio <= maxRatio, got "
                             f"{self.min_ratio}..{self.max_ratio}")


@dataclass(frozen=True)
class RatioResult:
    replicas: dict[str, int]
    adjusted: bool
    ratio: float | None
    reason: str


def enforce_ratio(desired: Mapping[str, int], bounds: Mapping[str, tuple[int, int]],
                  constraint: RatioConstraint) -> RatioResult:
    num, den = constraint.numerator, constraint.denominator
    for role in (num, den):
        if role not in desired or role not in bounds:
            raise ValueError(f"ratioConstraint names role {role!r}, which has no recommendation or bounds")
    (nlo, nhi), (dlo, dhi) = bounds[num], bounds[den]
    want_n, want_d = desired[num], desired[den]
    best: tuple[tuple[int, int, int], int, int] | None = None
    if nlo == 0 and dlo == 0:
        best = ((want_n + want_d, 0, want_n + want_d), 0, 0)
    for d in range(max(dlo, 1), dhi + 1):
        lo_n = max(nlo, math.ceil(constraint.min_ratio * d - 1e-9))
        hi_n = min(nhi, math.floor(constraint.max_ratio * d + 1e-9))
        if lo_n > hi_n:
            continue
        n = min(max(want_n, lo_n), hi_n)
        deficit = max(0, want_n - n) + max(0, want_d - d)
        excess = max(0, n - want_n) + max(0, d - want_d)
        key = (deficit, excess, abs(n - want_n) + abs(d - want_d))
        if best is None or key < best[0]:
            best = (key, n, d)
    if best is None:
        raise ValueError(
            f"ratioConstraint {constraint.min_ratio}..{constraint.max_ratio} cannot be met within "
            f"{num} {nlo}..{nhi} and {den} {dlo}..{dhi}")
    _, n, d = best
    out = dict(desired)
    out[num], out[den] = n, d
    adjusted = (n, d) != (want_n, want_d)
    ratio = n / d if d else None
    reason = (f"ratio {num}:{den} repaired from {want_n}:{want_d} to {n}:{d}" if adjusted
              else f"ratio {num}:{den} {n}:{d} within bounds")
    return RatioResult(out, adjusted, ratio, reason)


@dataclass(frozen=True)
class RoleOutcome:
    decisions: dict[str, Decision]
    replicas: dict[str, int]
    ratio: RatioResult | None


def scale_roles(configs: Mapping[str, KpaConfig], states: Mapping[str, KpaState], ticks: Mapping[str, Tick],
                constraint: RatioConstraint | None = None) -> tuple[RoleOutcome, dict[str, KpaState]]:
    decisions: dict[str, Decision] = {}
    next_states: dict[str, KpaState] = {}
    for role, config in configs.items():
        if config.min_replicas == config.max_replicas:
            # A fixed role is neither scraped nor scaled.
            t = ticks[role]
            decisions[role] = Decision(config.min_replicas, t.current_replicas, "Stable", "fixed role", {})
            next_states[role] = states.get(role, KpaState())
            continue
        decisions[role], next_states[role] = recommend(config, states.get(role, KpaState()), ticks[role])
    replicas = {r: d.desired for r, d in decisions.items()}
    ratio = None
    if constraint is not None:
        bounds = {r: (c.floor, c.max_replicas) for r, c in configs.items()}
        ratio = enforce_ratio(replicas, bounds, constraint)
        replicas = ratio.replicas
    return RoleOutcome(decisions, replicas, ratio), next_states
