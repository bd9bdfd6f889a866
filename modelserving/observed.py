"""What exists in the cluster for one ModelServing, read from the objects themselves.

All controller state lives in labels and status fields, so a restarted controller
rebuilds this view from a list of its pods, Services, PodGroups and ControllerRevisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelserving import labels as L
from modelserving.naming import ordinal_of


def parse_time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class PodState:
    name: str
    uid: str
    group: str
    ordinal: int
    role: str
    role_id: str
    role_index: int
    worker_index: int
    revision: str
    role_hash: str
    phase: str
    ready: bool
    terminating: bool
    deletion_cost: int
    restarts: int
    failed_since: float | None  # when the pod last turned not-ready after a failure

    @property
    def running_ready(self) -> bool:
        return self.phase == "Running" and self.ready and not self.terminating

    @property
    def errored(self) -> bool:
        """Failed, or a container restarted and the pod has not come back Ready (Kthena handleErrorPod)."""
        if self.terminating:
            return False
        return self.phase == "Failed" or (self.restarts > 0 and not self.ready)


def pod_state(obj: Mapping[str, Any]) -> PodState | None:
    """The controller's view of a pod; None for pods without Kthena's labels."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    group, role, rid = labels.get(L.GROUP_NAME_LABEL), labels.get(L.ROLE_LABEL), labels.get(L.ROLE_ID_LABEL)
    if not group or not role or not rid:
        return None
    name = str(meta.get("name", ""))
    status = obj.get("status") or {}
    ready_cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    ready = bool(ready_cond and ready_cond.get("status") == "True")
    statuses = list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    times: list[float] = []
    if ready_cond and not ready:
        t = parse_time(ready_cond.get("lastTransitionTime"))
        if t is not None:
            times.append(t)
    for s in statuses:
        for state_key in ("state", "lastState"):
            term = (s.get(state_key) or {}).get("terminated") or {}
            t = parse_time(term.get("finishedAt"))
            if t is not None:
                times.append(t)
    try:
        cost = int((meta.get("annotations") or {}).get(L.POD_DELETION_COST_ANNOTATION, 0))
    except ValueError:
        cost = 0
    suffix = name.rsplit("-", 1)
    worker_index = int(suffix[1]) if len(suffix) == 2 and suffix[1].isdigit() else 0
    return PodState(
        name=name,
        uid=str(meta.get("uid", "")),
        group=str(group),
        ordinal=ordinal_of(str(group)),
        role=str(role),
        role_id=str(rid),
        role_index=ordinal_of(str(rid)),
        worker_index=worker_index,
        revision=str(labels.get(L.REVISION_LABEL, "")),
        role_hash=str(labels.get(L.ROLE_TEMPLATE_HASH_LABEL, "")),
        phase=str(status.get("phase") or "Pending"),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        deletion_cost=cost,
        restarts=restarts,
        failed_since=max(times) if times else None,
    )


@dataclass
class RoleReplicaState:
    role: str
    index: int
    pods: dict[int, PodState] = field(default_factory=dict)  # worker index -> pod

    @property
    def terminating(self) -> bool:
        return any(p.terminating for p in self.pods.values())

    @property
    def deletion_cost(self) -> int:
        return sum(p.deletion_cost for p in self.pods.values())

    def revision(self) -> str:
        return _majority(p.revision for p in self.pods.values())


@dataclass
class GroupState:
    ordinal: int
    name: str
    roles: dict[str, dict[int, RoleReplicaState]] = field(default_factory=dict)
    podgroup: Mapping[str, Any] | None = None

    def pods(self) -> list[PodState]:
        return [p for replicas in self.roles.values() for rr in replicas.values() for p in rr.pods.values()]

    @property
    def terminating(self) -> bool:
        return any(p.terminating for p in self.pods())

    @property
    def deletion_cost(self) -> int:
        return sum(p.deletion_cost for p in self.pods())

    def revision(self) -> str:
        return _majority(p.revision for p in self.pods())


def _majority(values: Iterable[str]) -> str:
    counts = Counter(v for v in values if v)
    return counts.most_common(1)[0][0] if counts else ""


@dataclass
class Observed:
    """Pods, Services, PodGroups and ControllerRevisions of one ModelServing, keyed by name."""

    pods: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    services: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    podgroups: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    revisions: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # Deletions this controller issued and has not yet seen complete (ordinal; (ordinal, role, index)).
    deleting_groups: set[int] = field(default_factory=set)
    deleting_roles: set[tuple[int, str, int]] = field(default_factory=set)

    def groups(self, ms_name: str) -> dict[int, GroupState]:
        groups: dict[int, GroupState] = {}
        prefix = f"{ms_name}-"
        for obj in self.pods.values():
            pod = pod_state(obj)
            if pod is None or pod.ordinal < 0 or pod.role_index < 0 or not pod.group.startswith(prefix):
                continue
            g = groups.setdefault(pod.ordinal, GroupState(pod.ordinal, pod.group))
            rr = g.roles.setdefault(pod.role, {}).setdefault(pod.role_index, RoleReplicaState(pod.role, pod.role_index))
            rr.pods[pod.worker_index] = pod
        for name, pg in self.podgroups.items():
            ordinal = ordinal_of(name)
            if ordinal < 0 or not name.startswith(prefix) or name != f"{ms_name}-{ordinal}":
                continue
            groups.setdefault(ordinal, GroupState(ordinal, name)).podgroup = pg
        return groups
