"""Which ServingGroups or role replicas to add and which to remove (Kthena binpack_scaledown.go)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A ServingGroup or a role replica, as scale-down sees it."""

    ordinal: int
    running: bool  # every pod Running and Ready
    deletion_cost: int = 0  # sum of controller.kubernetes.io/pod-deletion-cost over its pods


def _order_key(c: Candidate) -> tuple[int, int, int]:
    # Not-Running first, then lower deletion cost, then higher ordinal.
    return (1 if c.running else 0, c.deletion_cost, -c.ordinal)


def scale_down(candidates: Sequence[Candidate], desired: int, partition: int = 0) -> list[int]:
    """Ordinals to delete so that `desired` remain, in deletion order.

    The first `partition` candidates by ordinal are protected: they go only after every
    unprotected one has gone.
    """
    excess = len(candidates) - desired
    if excess <= 0:
        return []
    by_ordinal = sorted(candidates, key=lambda c: c.ordinal)
    split = min(max(partition, 0), len(by_ordinal))
    protected, unprotected = by_ordinal[:split], by_ordinal[split:]
    order = sorted(unprotected, key=_order_key) + sorted(protected, key=_order_key)
    return [c.ordinal for c in order[:excess]]


def missing_ordinals(desired: int, existing: Iterable[int]) -> list[int]:
    """Ordinals in [0, desired) to create, at most `desired - len(existing)` of them (lowest first)."""
    have = set(existing)
    budget = desired - len(have)
    if budget <= 0:
        return []
    return [i for i in range(desired) if i not in have][:budget]
