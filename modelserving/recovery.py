"""What to do with a role replica whose pods failed or vanished (Kthena §2.7).

`RoleRecreate` (default) recreates the whole role replica, `ServingGroupRecreate` the whole
ServingGroup, `None` only the missing pod. A failed pod (or one whose container restarted and
is not Ready) is first given `restartGracePeriodSeconds` to come back, then deleted.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelserving.observed import PodState


class Action(enum.Enum):
    NOTHING = "nothing"
    WAIT = "wait"  # a pod is terminating, or a failed pod is within its grace period
    DELETE_POD = "delete-pod"  # grace expired: delete the failed pod (with its UID as precondition)
    CREATE_MISSING = "create-missing"
    RECREATE_ROLE = "recreate-role"
    RECREATE_GROUP = "recreate-group"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    pods: tuple[str, ...] = ()  # pods to delete (DELETE_POD)
    uids: tuple[str, ...] = ()
    missing: tuple[int, ...] = ()  # worker indexes to create (CREATE_MISSING)
    wait_seconds: float | None = None
    extra: tuple[str, ...] = field(default=())  # pods beyond the template (to delete)


def decide(policy: str, expected_pods: int, pods: Mapping[int, PodState], grace_seconds: int,
           now: float) -> Decision:
    """The recovery step for one existing role replica (at least one of its pods exists)."""
    if any(p.terminating for p in pods.values()):
        return Decision(Action.WAIT, "a pod of the role replica is terminating")
    extra = tuple(sorted(p.name for k, p in pods.items() if k >= expected_pods))
    if extra:
        return Decision(Action.DELETE_POD, "pods beyond workerReplicas", pods=extra,
                        uids=tuple(pods[k].uid for k in sorted(pods) if k >= expected_pods))
    errored = [p for p in pods.values() if p.errored]
    if errored:
        waits: list[float] = []
        expired: list[PodState] = []
        for p in errored:
            since = p.failed_since if p.failed_since is not None else now
            left = since + grace_seconds - now
            (expired.append(p) if left <= 0 else waits.append(left))
        if expired:
            return Decision(Action.DELETE_POD, "failed past restartGracePeriodSeconds",
                            pods=tuple(p.name for p in expired), uids=tuple(p.uid for p in expired))
        return Decision(Action.WAIT, "failed pod within restartGracePeriodSeconds", wait_seconds=min(waits))
    missing = tuple(k for k in range(expected_pods) if k not in pods)
    if not missing:
        return Decision(Action.NOTHING, "complete")
    if policy == "None":
        return Decision(Action.CREATE_MISSING, "recoveryPolicy None: recreate only the missing pods",
                        missing=missing)
    if policy == "ServingGroupRecreate":
        return Decision(Action.RECREATE_GROUP, f"pods {list(missing)} missing: recreate the ServingGroup")
    return Decision(Action.RECREATE_ROLE, f"pods {list(missing)} missing: recreate the role replica")
