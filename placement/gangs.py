"""Gangs from Kubernetes objects: a Volcano PodGroup and its pods (plain dicts).

Role replicas follow the PodGroup's `subGroupPolicy` the way Volcano forms sub-groups: a pod
belongs to a policy when it matches its `labelSelector` and has non-empty values for every
`matchLabelKeys` key; equal values form one sub-group (Kthena: one per `role-id`). The first
`minSubGroups` sub-groups of a policy (by value) are required, the others optional. Pods in no
sub-group are grouped by their `volcano.sh/task-spec` annotation, all required.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from placement.model import Gang, PodRequest, Requirement, RoleReplica, Scheduling, Toleration, TopologyPolicy
from topology.kube import pod_request

GROUP_NAME_ANNOTATION = "scheduling.k8s.io/group-name"
TASK_SPEC_ANNOTATION = "volcano.sh/task-spec"


def policy_from(raw: Mapping[str, Any] | None, where: str,
                tier_names: Mapping[str, int] | None = None) -> TopologyPolicy | None:
    """A Volcano NetworkTopologySpec; `highestTierName` (v1.14) is resolved through the HyperNodes' tierNames."""
    if not raw:
        return None
    tier = raw.get("highestTierAllowed")
    name = raw.get("highestTierName")
    if tier is not None and name:
        raise ValueError(f"{where}.networkTopology: highestTierAllowed and highestTierName are exclusive")
    if name:
        if not tier_names or name not in tier_names:
            known = sorted(tier_names or {})
            raise ValueError(f"{where}.networkTopology.highestTierName: no HyperNode has tierName {name!r} "
                             f"(known: {known})")
        tier = tier_names[name]
    try:
        return TopologyPolicy(mode=raw.get("mode", "hard"), highest_tier_allowed=int(tier) if tier is not None else None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}.networkTopology: {exc}") from exc


def scheduling_from(spec: Mapping[str, Any]) -> Scheduling:
    terms: list[tuple[Requirement, ...]] = []
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in affinity.get("nodeSelectorTerms") or []:
        reqs = tuple((e["key"], e["operator"], tuple(e.get("values") or ()))
                     for e in term.get("matchExpressions") or [])
        fields = tuple(("metadata.name" if e["key"] == "metadata.name" else e["key"], e["operator"],
                        tuple(e.get("values") or ())) for e in term.get("matchFields") or [])
        terms.append(reqs + fields)
    tolerations = tuple(
        Toleration(key=t.get("key") or "", operator=t.get("operator") or "Equal", value=t.get("value") or "",
                   effect=t.get("effect") or "")
        for t in spec.get("tolerations") or []
    )
    return Scheduling(node_selector=tuple(sorted((spec.get("nodeSelector") or {}).items())),
                      affinity_terms=tuple(terms), tolerations=tolerations)


def pod_from(obj: Mapping[str, Any]) -> PodRequest:
    spec = obj.get("spec") or {}
    return PodRequest(name=obj["metadata"]["name"], requests=pod_request(spec), scheduling=scheduling_from(spec),
                      current_node=spec.get("nodeName") or None)


def _matches(labels: Mapping[str, str], selector: Mapping[str, Any] | None) -> bool:
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def gang_from_objects(podgroup: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]],
                      name: str | None = None, anchored_nodes: Sequence[str] = (),
                      tier_names: Mapping[str, int] | None = None) -> Gang:
    """One gang from a PodGroup (may be None: one role replica per task-spec) and its pods."""
    if not pods:
        raise ValueError("gang_from_objects: needs at least one pod")
    pg_spec = (podgroup or {}).get("spec") or {}
    pg_name = (podgroup or {}).get("metadata", {}).get("name")
    namespace = pods[0].get("metadata", {}).get("namespace", "default")
    gang_name = name or f"{namespace}/{pg_name or pods[0]['metadata'].get('annotations', {}).get(GROUP_NAME_ANNOTATION, pods[0]['metadata']['name'])}"
    where = f"PodGroup {namespace}/{pg_name}.spec" if pg_name else "pods"
    groups: dict[tuple[str, tuple[str, ...]], list[Mapping[str, Any]]] = {}
    role_policies: dict[str, TopologyPolicy] = {}
    min_subgroups: dict[str, int] = {}
    claimed: set[str] = set()
    for i, policy in enumerate(pg_spec.get("subGroupPolicy") or []):
        pname = policy.get("name") or f"subgroup-{i}"
        keys = policy.get("matchLabelKeys") or []
        topo = policy_from(policy.get("networkTopology"), f"{where}.subGroupPolicy[{i}]", tier_names)
        if topo is not None:
            role_policies[pname] = topo
        min_subgroups[pname] = int(policy.get("minSubGroups") or 0)
        if not keys:
            continue  # Volcano: a policy without matchLabelKeys captures no pods
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            labels = pod["metadata"].get("labels") or {}
            if pod_name in claimed or not _matches(labels, policy.get("labelSelector")):
                continue
            values = tuple(labels.get(k, "") for k in keys)
            if not all(values):
                continue
            groups.setdefault((pname, values), []).append(pod)
            claimed.add(pod_name)
    for pod in pods:
        if pod["metadata"]["name"] in claimed:
            continue
        task = (pod["metadata"].get("annotations") or {}).get(TASK_SPEC_ANNOTATION, "pods")
        groups.setdefault((task, ("",)), []).append(pod)
    replicas: list[RoleReplica] = []
    per_role_index: dict[str, int] = {}
    for (role, _values), members in sorted(groups.items(), key=lambda kv: (kv[0][0], _natural(kv[0][1]))):
        index = per_role_index.get(role, 0)
        per_role_index[role] = index + 1
        required = role not in min_subgroups or min_subgroups[role] == 0 or index < min_subgroups[role]
        ordered = sorted(members, key=lambda p: _natural((p["metadata"]["name"],)))
        replicas.append(RoleReplica(role=role, index=index, pods=tuple(pod_from(p) for p in ordered),
                                    required=required))
    priority = max(int((p.get("spec") or {}).get("priority") or 0) for p in pods)
    return Gang(name=gang_name, role_replicas=tuple(replicas),
                group_policy=policy_from(pg_spec.get("networkTopology"), where, tier_names),
                role_policies=role_policies, priority=priority, anchored_nodes=tuple(sorted(set(anchored_nodes))))


def _natural(values: tuple[str, ...]) -> tuple[tuple[int, int | str], ...]:
    """Sort "prefill-10" after "prefill-9"."""
    out: list[tuple[int, int | str]] = []
    for value in values:
        for part in value.replace("_", "-").split("-"):
            out.append((0, int(part)) if part.isdigit() else (1, part))
    return tuple(out)
