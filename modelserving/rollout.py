"""Rolling-update arithmetic, shared by ServingGroupRollingUpdate and RoleRollingUpdate.

Like the Deployment controller: outdated units that are already unavailable may always
be replaced (that cannot lower availability); available outdated units are replaced only
while at least `replicas - maxUnavailable` units stay available. Units below `partition`
(by ordinal) keep their revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """A ServingGroup (or role replica) during a rollout."""

    ordinal: int
    updated: bool  # already at the update revision
    available: bool  # every pod Running and Ready


@dataclass(frozen=True)
class RolloutStep:
    replace: list[int]  # ordinals to delete now (they are recreated at the update revision)
    available: int
    min_available: int
    reason: str


def plan_step(units: Sequence[Unit], replicas: int, max_unavailable: int, partition: int = 0) -> RolloutStep:
    ordered = sorted(units, key=lambda u: u.ordinal)
    eligible = ordered[max(partition, 0):]
    available = sum(1 for u in ordered if u.available)
    min_available = max(replicas - max(max_unavailable, 1), 0)
    outdated = [u for u in eligible if not u.updated]
    if not outdated:
        return RolloutStep([], available, min_available, "nothing outdated past the partition")
    unhealthy = [u.ordinal for u in sorted(outdated, key=lambda u: -u.ordinal) if not u.available]
    budget = max(available - min_available, 0)
    healthy = [u.ordinal for u in sorted(outdated, key=lambda u: -u.ordinal) if u.available][:budget]
    reason = (f"{len(outdated)} outdated; {available} available, at least {min_available} must stay; "
              f"replacing {len(unhealthy)} unavailable and {len(healthy)} available")
    return RolloutStep(unhealthy + healthy, available, min_available, reason)


def next_current_revision(current: str | None, update: str, replicas: int, updated_available: int) -> str:
    """StatefulSet-style: currentRevision moves to the update revision once every unit is on it and up."""
    if current is None or updated_available >= replicas:
        return update
    return current
