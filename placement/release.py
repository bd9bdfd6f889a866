"""How a planned pod is handed to Volcano, and how gated groups are judged complete. Pure functions.

A gated pod may only be tightened: Kubernetes lets a pod that still has scheduling gates gain
node affinity requirements (added to every existing term) and lose gates. One JSON patch adds
`kubernetes.io/hostname In [nodes]`, records the planned node and time in annotations (so the
capacity stays held and the deadline survives a restart) and removes Caldera's gate; a
`test` on the resourceVersion makes it apply only to the pod that was planned.

Every pod of one `volcano.sh/task-spec` (a Kthena role replica) gets the same hostname set: the
nodes planned for all of them. Volcano v1.14.1 evaluates predicates once per task-spec with the
first pod's allowed nodes, so pods of one task-spec pinned to different nodes would stay Pending.
The set lies inside the planned domain, so the topology constraint holds whichever pod Volcano
binds where; the annotation keeps each pod's own planned node.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from topology.kube import PLANNED_NODE_ANNOTATION

PLACEMENT_GATE = "caldera.dev/placement"
PLANNED_AT_ANNOTATION = "caldera.dev/planned-at"
REASON_ANNOTATION = "caldera.dev/placement-reason"
CONDITION_TYPE = "caldera.dev/Placement"
HOSTNAME_LABEL = "kubernetes.io/hostname"
GROUP_NAME_ANNOTATION = "scheduling.k8s.io/group-name"
TASK_SPEC_ANNOTATION = "volcano.sh/task-spec"
MODELSERVING_NAME_LABEL = "modelserving.volcano.sh/name"


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def is_gated(pod: Mapping[str, Any]) -> bool:
    return any(g.get("name") == PLACEMENT_GATE for g in (pod.get("spec") or {}).get("schedulingGates") or [])


def task_spec_hostnames(pods: Sequence[Mapping[str, Any]], assignments: Mapping[str, str]) -> dict[str, list[str]]:
    """Pod name -> the sorted nodes planned for every pod of its task-spec in `assignments`.

    Pods are grouped by (namespace, gang, task-spec); a pod without a task-spec keeps its own node.
    """
    groups: dict[tuple[str, str, str], set[str]] = {}
    keys: dict[str, tuple[str, str, str]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = meta.get("name")
        if not name or name not in assignments:
            continue
        task = (meta.get("annotations") or {}).get(TASK_SPEC_ANNOTATION)
        namespace, gang = group_key(pod)
        key = (namespace, gang, task) if task else (namespace, gang, f"pod:{name}")
        keys[name] = key
        groups.setdefault(key, set()).add(assignments[name])
    return {name: sorted(groups[key]) for name, key in keys.items()}


def release_patch(pod: Mapping[str, Any], node: str, planned_at: str,
                  hostnames: Sequence[str] = ()) -> list[dict[str, Any]]:
    """JSON patch (RFC 6902) that requires `pod` on one of `hostnames` (its task-spec's planned nodes,
    default just `node`), records `node` as its own planned node and removes the placement gate."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    requirement = {"key": HOSTNAME_LABEL, "operator": "In", "values": sorted({node, *hostnames})}
    ops: list[dict[str, Any]] = []
    if meta.get("resourceVersion"):
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]})
    affinity = spec.get("affinity")
    node_affinity = (affinity or {}).get("nodeAffinity")
    required = (node_affinity or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    fresh_required = {"nodeSelectorTerms": [{"matchExpressions": [requirement]}]}
    if not affinity:
        ops.append({"op": "add", "path": "/spec/affinity",
                    "value": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": fresh_required}}})
    elif not node_affinity:
        ops.append({"op": "add", "path": "/spec/affinity/nodeAffinity",
                    "value": {"requiredDuringSchedulingIgnoredDuringExecution": fresh_required}})
    elif not required or not required.get("nodeSelectorTerms"):
        ops.append({"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
                    "value": fresh_required})
    else:
        # Terms are ORed: the requirement must join every one of them to pin the pod.
        base = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"
        for i, term in enumerate(required["nodeSelectorTerms"]):
            if term.get("matchExpressions"):
                ops.append({"op": "add", "path": f"{base}/{i}/matchExpressions/-", "value": requirement})
            else:
                ops.append({"op": "add", "path": f"{base}/{i}/matchExpressions", "value": [requirement]})
    notes = {PLANNED_NODE_ANNOTATION: node, PLANNED_AT_ANNOTATION: planned_at}
    if not meta.get("annotations"):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": notes})
    else:
        for key, value in notes.items():
            ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value})
        if REASON_ANNOTATION in meta["annotations"]:
            ops.append({"op": "remove", "path": f"/metadata/annotations/{_escape(REASON_ANNOTATION)}"})
    remaining = [g for g in spec.get("schedulingGates") or [] if g.get("name") != PLACEMENT_GATE]
    if remaining:
        ops.append({"op": "replace", "path": "/spec/schedulingGates", "value": remaining})
    else:
        ops.append({"op": "remove", "path": "/spec/schedulingGates"})
    return ops


def expected_pods(modelserving: Mapping[str, Any] | None, podgroup: Mapping[str, Any] | None) -> int:
    """Pods a ServingGroup will have: every pod of every role replica, and at least PodGroup minMember."""
    expected = 0
    if modelserving:
        roles = ((modelserving.get("spec") or {}).get("template") or {}).get("roles") or []
        for role in roles:
            replicas = role.get("replicas", 1)
            expected += int(1 if replicas is None else replicas) * (1 + int(role.get("workerReplicas") or 0))
    if podgroup:
        expected = max(expected, int(((podgroup.get("spec") or {}).get("minMember")) or 0))
    return expected


def group_key(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, gang) of a pod: its Volcano group, or the pod itself when it has none."""
    meta = pod.get("metadata") or {}
    group = (meta.get("annotations") or {}).get(GROUP_NAME_ANNOTATION) or f"pod:{meta.get('name')}"
    return meta.get("namespace") or "default", group


def complete_groups(
    pods_by_group: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    expected: Mapping[tuple[str, str], int],
) -> list[tuple[str, str]]:
    """Groups whose gated pods, together with their other live pods, reach the expected count."""
    out = []
    for key, pods in pods_by_group.items():
        gated = [p for p in pods if is_gated(p)]
        if not gated:
            continue
        live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
        if len(live) >= expected.get(key, 1):
            out.append(key)
    return sorted(out)


def planned_unbound(pod: Mapping[str, Any]) -> bool:
    """Released by the planner but not (yet) bound by Volcano."""
    meta = pod.get("metadata") or {}
    return (PLANNED_NODE_ANNOTATION in (meta.get("annotations") or {}) and not (pod.get("spec") or {}).get("nodeName")
            and not is_gated(pod) and not meta.get("deletionTimestamp"))


def overdue_groups(pods: Sequence[Mapping[str, Any]], now: dt.datetime, deadline_seconds: float,
                   nodes: set[str]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Gangs to send back for planning: some planned pod is still unbound past the deadline, or its
    planned node is gone. The whole gang's unbound pods go back: Volcano binds gangs atomically,
    so one stuck pod holds all of them."""
    stuck: set[tuple[str, str]] = set()
    for pod in pods:
        if not planned_unbound(pod):
            continue
        annotations = pod["metadata"]["annotations"]
        try:
            planned_at = dt.datetime.strptime(annotations.get(PLANNED_AT_ANNOTATION) or "",
                                              "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        if (now - planned_at).total_seconds() > deadline_seconds or annotations[PLANNED_NODE_ANNOTATION] not in nodes:
            stuck.add(group_key(pod))
    out: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for pod in pods:
        key = group_key(pod)
        if key in stuck and planned_unbound(pod):
            out.setdefault(key, []).append(pod)
    return out
