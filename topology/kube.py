"""Reading Kubernetes and Volcano objects (plain dicts, as kopf and the API return them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from topology.graph import HyperNodeSpec, MemberSelector, NodeInfo, Taint, Topology
from topology.resources import Resources, add, parse_resources

# Set by the placement controller on pods it has planned, so capacity is held for them
# between gate removal and Volcano's bind.
PLANNED_NODE_ANNOTATION = "caldera.dev/planned-node"

_TERMINAL = {"Succeeded", "Failed"}


def hypernode_from_object(obj: Mapping[str, Any]) -> HyperNodeSpec:
    """A `topology.volcano.sh/v1alpha1` HyperNode as a spec; errors name the bad field."""
    name = obj.get("metadata", {}).get("name")
    if not name:
        raise ValueError("HyperNode: metadata.name is required")
    spec = obj.get("spec") or {}
    if "tier" not in spec:
        raise ValueError(f"HyperNode {name}: spec.tier is required")
    try:
        tier = int(spec["tier"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"HyperNode {name}: spec.tier must be an integer, got {spec['tier']!r}") from exc
    members = []
    for i, member in enumerate(spec.get("members") or []):
        selector = member.get("selector") or {}
        where = f"HyperNode {name}: spec.members[{i}]"
        try:
            members.append(_member(member.get("type", "Node"), selector))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    if not members:
        raise ValueError(f"HyperNode {name}: spec.members must not be empty")
    return HyperNodeSpec(name=name, tier=tier, members=tuple(members), tier_name=spec.get("tierName"))


def _member(kind: str, selector: Mapping[str, Any]) -> MemberSelector:
    exact = (selector.get("exactMatch") or {}).get("name") if "exactMatch" in selector else None
    regex = (selector.get("regexMatch") or {}).get("pattern") if "regexMatch" in selector else None
    labels: tuple[tuple[str, str], ...] | None = None
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    if "labelMatch" in selector:
        label_match = selector.get("labelMatch") or {}
        labels = tuple(sorted((label_match.get("matchLabels") or {}).items()))
        expressions = tuple(
            (e["key"], e["operator"], tuple(e.get("values") or ()))
            for e in label_match.get("matchExpressions") or []
        )
    return MemberSelector(type=kind, exact=exact, regex=regex, labels=labels, expressions=expressions)


def node_from_object(obj: Mapping[str, Any]) -> NodeInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = True
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
    taints = tuple(
        Taint(key=t.get("key", ""), value=t.get("value") or "", effect=t.get("effect", "NoSchedule"))
        for t in spec.get("taints") or []
    )
    return NodeInfo(
        name=meta["name"],
        allocatable=parse_resources(status.get("allocatable") or status.get("capacity")),
        labels=dict(meta.get("labels") or {}),
        taints=taints,
        schedulable=ready and not spec.get("unschedulable", False),
    )


def pod_request(pod_spec: Mapping[str, Any]) -> Resources:
    """The effective request of a pod: max(Σ containers, each init container) + overhead."""
    containers: Resources = {}
    for c in pod_spec.get("containers") or []:
        containers = add(containers, _container_request(c))
    for c in pod_spec.get("initContainers") or []:
        init = _container_request(c)
        if c.get("restartPolicy") == "Always":  # sidecar: runs alongside the containers
            containers = add(containers, init)
            continue
        for key, value in init.items():
            containers[key] = max(containers.get(key, 0), value)
    return add(containers, parse_resources(pod_spec.get("overhead")))


def _container_request(container: Mapping[str, Any]) -> Resources:
    resources = container.get("resources") or {}
    # Kubernetes defaults requests to limits when only limits are set.
    merged = dict(resources.get("limits") or {})
    merged.update(resources.get("requests") or {})
    return parse_resources(merged)


def pod_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name')}"


def pod_usage(obj: Mapping[str, Any]) -> tuple[str, str, Resources] | None:
    """`(key, node, request)` when the pod holds capacity on a node, else None."""
    status = obj.get("status") or {}
    if status.get("phase") in _TERMINAL:
        return None
    spec = obj.get("spec") or {}
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    node = spec.get("nodeName") or status.get("nominatedNodeName") or annotations.get(PLANNED_NODE_ANNOTATION)
    if not node:
        return None
    return pod_key(obj), node, pod_request(spec)


def topology_from_objects(
    nodes: Iterable[Mapping[str, Any]],
    hypernodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]] = (),
) -> Topology:
    usages = [u for u in (pod_usage(p) for p in pods) if u is not None]
    return Topology.build(
        [node_from_object(n) for n in nodes],
        [hypernode_from_object(h) for h in hypernodes],
        usages,
    )
