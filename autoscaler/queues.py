"""Room left in a Volcano Queue, for the heterogeneous optimiser (pure).

A ModelServing's gangs go to the queue its `scheduling.volcano.sh/queue-name` annotation
names (Volcano's queue "default" without it). Volcano admits a gang only while the queue's
allocation plus the gang stays within `spec.capability`, so replicas asked for beyond it
would only wait. The room left per resource is

    capability - used,   used = status.allocated + requests of the queue's waiting PodGroups

vc-scheduler v1.14.1 writes `status.allocated` (the resources its running tasks hold);
gangs that wait (PodGroup phase Pending or Inqueue) hold nothing yet, but they will take
their share first, so their `spec.minResources` count as used. Without `status.allocated`
(older Volcano), every unfinished PodGroup's `spec.minResources` counts.

Only `spec.capability` is a ceiling. `deserved` (proportion/capacity plugins) and
`guarantee` are what a queue is promised, not what it may hold: a queue without
capability may borrow idle resources beyond them, so capping at them would leave GPUs idle
that Volcano would hand out. A queue without capability, or no Queue object, means no cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from topology.kube import pod_request
from topology.resources import CPU, Resources, add, parse_resources

QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
DEFAULT_QUEUE = "default"
WAITING_PHASES = frozenset({"Pending", "Inqueue"})
FINISHED_PHASES = frozenset({"Completed", "Failed"})  # hold nothing any more


@dataclass(frozen=True)
class QueueRoom:
    """Per capped resource (base units: CPU in millicores, memory in bytes): the capability,
    what is used and what is left (negative when the queue is over its capability)."""

    name: str
    capability: Resources
    used: Resources
    used_from: str  # "status.allocated" or "PodGroups"

    @property
    def left(self) -> Resources:
        return {r: cap - self.used.get(r, 0) for r, cap in self.capability.items()}

    def describe(self, resource: str) -> str:
        return f"queue {self.name} has {format_amount(resource, self.left[resource])} {resource} left"


def format_amount(resource: str, value: int) -> str:
    if resource == CPU:
        return f"{value}m" if value % 1000 else str(value // 1000)
    return str(value)


def queue_of(ms: Mapping[str, Any]) -> str:
    """The Volcano queue a ModelServing's PodGroups go to."""
    annotations = (ms.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(QUEUE_ANNOTATION) or DEFAULT_QUEUE)


def replica_request(ms: Mapping[str, Any]) -> Resources:
    """What one replica (ServingGroup) of a ModelServing requests: every role's entry and worker pods."""
    total: Resources = {}
    roles = ((ms.get("spec") or {}).get("template") or {}).get("roles") or []
    for i, role in enumerate(roles):
        replicas = int(role.get("replicas", 1))
        workers = int(role.get("workerReplicas", 0))
        if replicas < 0 or workers < 0:
            raise ValueError(f"spec.template.roles[{i}]: replicas and workerReplicas must be >= 0")
        entry = pod_request((role.get("entryTemplate") or {}).get("spec") or {})
        worker = pod_request((role.get("workerTemplate") or {}).get("spec") or {}) if workers else {}
        for _ in range(replicas):
            total = add(total, entry)
            for _ in range(workers):
                total = add(total, worker)
    return total


def queue_room(queue: Mapping[str, Any], podgroups: Iterable[Mapping[str, Any]] = ()) -> QueueRoom | None:
    """The room left in a Queue object, or None when it caps nothing (no `spec.capability`).

    `podgroups` are the PodGroups the caller can see (any queue; filtered here by `spec.queue`)."""
    meta = queue.get("metadata") or {}
    name = str(meta.get("name") or "")
    spec = queue.get("spec") or {}
    try:
        capability = parse_resources(spec.get("capability"))
    except ValueError as exc:
        raise ValueError(f"Queue {name}: spec.capability: {exc}") from exc
    if not capability:
        return None
    status = queue.get("status") or {}
    allocated = status.get("allocated")
    used: Resources = {}
    if allocated is not None:
        try:
            used = parse_resources(allocated)
        except ValueError as exc:
            raise ValueError(f"Queue {name}: status.allocated: {exc}") from exc
    for pg in podgroups:
        pg_spec = pg.get("spec") or {}
        if (pg_spec.get("queue") or DEFAULT_QUEUE) != name:
            continue
        phase = (pg.get("status") or {}).get("phase") or "Pending"
        if allocated is not None and phase not in WAITING_PHASES:
            continue
        if phase in FINISHED_PHASES:
            continue
        try:
            used = add(used, parse_resources(pg_spec.get("minResources")))
        except ValueError as exc:
            pg_meta = pg.get("metadata") or {}
            raise ValueError(f"PodGroup {pg_meta.get('namespace')}/{pg_meta.get('name')}: "
                             f"spec.minResources: {exc}") from exc
    return QueueRoom(name, capability, {r: used.get(r, 0) for r in capability},
                     "status.allocated" if allocated is not None else "PodGroups")


def replicas_that_fit(left: Mapping[str, int], request: Mapping[str, int]) -> tuple[int, str] | None:
    """New replicas of one variant alone that fit in the room left, and the resource that
    binds; None when the queue caps none of the resources the replica requests."""
    best: tuple[int, str] | None = None
    for resource, per in sorted(request.items()):
        if per <= 0 or resource not in left:
            continue
        n = max(0, left[resource]) // per
        if best is None or n < best[0]:
            best = (n, resource)
    return best
