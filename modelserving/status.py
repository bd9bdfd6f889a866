"""ModelServing status: counts, revisions, the /scale label selector and conditions (Kthena §2.8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

AVAILABLE = "Available"
PROGRESSING = "Progressing"
UPDATE_IN_PROGRESS = "UpdateInProgress"
CONDITION_TYPES = (AVAILABLE, PROGRESSING, UPDATE_IN_PROGRESS)
_REASONS = {AVAILABLE: "AllGroupsReady", PROGRESSING: "GroupProgressing", UPDATE_IN_PROGRESS: "GroupsUpdating"}


@dataclass(frozen=True)
class GroupSummary:
    ordinal: int
    revision: str
    updated: bool
    ready: bool


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(groups: Sequence[GroupSummary], replicas: int, partition: int, previous: Sequence[Mapping[str, Any]],
               now: float) -> list[dict[str, Any]]:
    """Exactly one of Available, Progressing, UpdateInProgress is True.

    Available: every wanted ServingGroup exists and is ready. UpdateInProgress: not all ready and
    more than `partition` groups still on an old revision. Progressing otherwise.
    """
    progressing = sorted(g.ordinal for g in groups if not g.ready)
    missing = max(replicas - len(groups), 0)
    outdated = sum(1 for g in groups if not g.updated)
    if not progressing and not missing:
        active, message = AVAILABLE, "All ServingGroups are ready"
    else:
        message = f"ServingGroups progressing: {progressing}" + (f", {missing} to create" if missing else "")
        if outdated > partition:
            active = UPDATE_IN_PROGRESS
            updated = sorted(g.ordinal for g in groups if g.updated)
            message += f"; updated: {updated}"
        else:
            active = PROGRESSING
    old = {c.get("type"): c for c in previous}
    result: list[dict[str, Any]] = []
    for ctype in CONDITION_TYPES:
        status = "True" if ctype == active else "False"
        prev = old.get(ctype)
        if prev is None and status == "False":
            continue  # conditions that never held need not be listed
        unchanged = prev is not None and prev.get("status") == status
        result.append({
            "type": ctype,
            "status": status,
            "reason": _REASONS[ctype],
            "message": message if status == "True" else str(prev.get("message", "")) if unchanged and prev else "",
            "lastTransitionTime": (prev or {}).get("lastTransitionTime") if unchanged else rfc3339(now),
        })
    return result


def compute_status(*, generation: int, groups: Sequence[GroupSummary], replicas: int, partition: int,
                   current_revision: str, update_revision: str, label_selector: str,
                   previous: Mapping[str, Any], now: float) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": len(groups),
        "currentReplicas": sum(1 for g in groups if g.revision == current_revision),
        "updatedReplicas": sum(1 for g in groups if g.updated),
        "availableReplicas": sum(1 for g in groups if g.ready),
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "labelSelector": label_selector,
        "conditions": conditions(groups, replicas, partition, previous.get("conditions") or [], now),
    }


def status_changes(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `desired` that differ from `previous` (an empty dict means: do not write)."""
    return {k: v for k, v in desired.items() if previous.get(k) != v}
