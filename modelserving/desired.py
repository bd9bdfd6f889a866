"""ModelServing → the objects a ServingGroup consists of: pods, headless Services, a PodGroup.

Pure functions over `spec` dataclasses. Names, labels, annotations and environment
variables are Kthena's (reference kthena.md §2.2-2.4), so tooling written for Kthena
(selectors, dashboards, launch scripts reading ENTRY_ADDRESS) keeps working.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from modelserving import labels as L
from modelserving.lws import LWS_LABELS_PLUGIN, lws_pod_labels
from modelserving.naming import group_name, pod_name, role_id, service_name
from modelserving.resources import ResourceTotals, add, container_requests, to_resource_list
from modelserving.revision import owner_reference, role_template_hash
from modelserving.spec import Json, ModelServing, Role, Template


@dataclass(frozen=True)
class PodOptions:
    """How pods are handed to the scheduler."""

    podgroups: bool = True  # the PodGroup CRD exists and schedulerName is volcano
    subgroups: bool = True  # the PodGroup CRD has spec.subGroupPolicy (Volcano >= 1.14)
    placement_gate: bool = False  # --placement=caldera: pods wait for the placement controller


def _with_env(container: Json, env: list[Json]) -> Json:
    names = {e["name"] for e in env}
    kept = [e for e in container.get("env") or [] if e.get("name") not in names]
    return {**container, "env": kept + env}


def role_env(ms: ModelServing, group: str, role: Role, index: int, worker_index: int) -> list[Json]:
    entry = pod_name(group, role_id(role.name, index), 0)
    return [
        {"name": L.GROUP_SIZE_ENV, "value": str(role.worker_replicas + 1)},
        # The headless Service named like the entry pod makes this resolvable.
        {"name": L.ENTRY_ADDRESS_ENV, "value": f"{entry}.{ms.namespace}"},
        {"name": L.WORKER_INDEX_ENV, "value": str(worker_index)},
    ]


def role_pod(
    ms: ModelServing,
    ordinal: int,
    role: Role,
    index: int,
    worker_index: int,
    revision: str,
    options: PodOptions,
) -> Json:
    """Pod `worker_index` (0 = entry) of replica `index` of `role` in ServingGroup `ordinal`."""
    group = group_name(ms.name, ordinal)
    rid = role_id(role.name, index)
    template = role.entry_template if worker_index == 0 else role.worker_template
    if template is None:
        raise ValueError(f"role {role.name!r} has workerReplicas > 0 but no workerTemplate")
    meta_tpl = template.get("metadata") or {}
    pod_labels = {
        L.NAME_LABEL: ms.name,
        L.GROUP_NAME_LABEL: group,
        L.ROLE_LABEL: role.name,
        L.ROLE_ID_LABEL: rid,
        L.REVISION_LABEL: revision,
        L.ROLE_TEMPLATE_HASH_LABEL: role_template_hash(role),
    }
    if worker_index == 0:
        pod_labels[L.ENTRY_LABEL] = L.ENTRY_VALUE
    # Kthena merges the template's metadata after its own labels.
    pod_labels.update(meta_tpl.get("labels") or {})
    if LWS_LABELS_PLUGIN in ms.plugins:
        pod_labels.update(lws_pod_labels(ms.name, ordinal, worker_index))
    annotations: dict[str, str] = dict(meta_tpl.get("annotations") or {})
    if options.podgroups and ms.uses_podgroups:
        annotations[L.KUBE_GROUP_NAME_ANNOTATION] = group
        annotations[L.TASK_SPEC_ANNOTATION] = rid

    spec: Json = copy.deepcopy(dict(template["spec"]))
    spec["schedulerName"] = ms.scheduler_name
    env = role_env(ms, group, role, index, worker_index)
    spec["containers"] = [_with_env(c, env) for c in spec.get("containers") or []]
    if spec.get("initContainers"):
        spec["initContainers"] = [_with_env(c, env) for c in spec["initContainers"]]
    if options.placement_gate:
        gates = [g for g in spec.get("schedulingGates") or [] if g.get("name") != L.PLACEMENT_GATE]
        spec["schedulingGates"] = [*gates, {"name": L.PLACEMENT_GATE}]

    metadata: Json = {
        "name": pod_name(group, rid, worker_index),
        "namespace": ms.namespace,
        "labels": pod_labels,
        "ownerReferences": [owner_reference(ms)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def role_replica_pods(ms: ModelServing, ordinal: int, role: Role, index: int, revision: str,
                      options: PodOptions) -> list[Json]:
    return [role_pod(ms, ordinal, role, index, k, revision, options) for k in range(role.pods_per_replica)]


def headless_service(ms: ModelServing, ordinal: int, role: Role, index: int) -> Json | None:
    """One headless Service per role replica that has workers, named like its entry pod."""
    if role.worker_template is None:
        return None
    group = group_name(ms.name, ordinal)
    rid = role_id(role.name, index)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(group, rid),
            "namespace": ms.namespace,
            "labels": {L.NAME_LABEL: ms.name, L.GROUP_NAME_LABEL: group, L.ROLE_LABEL: role.name,
                       L.ROLE_ID_LABEL: rid},
            "ownerReferences": [owner_reference(ms)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {L.GROUP_NAME_LABEL: group, L.ROLE_LABEL: role.name, L.ROLE_ID_LABEL: rid,
                         L.ENTRY_LABEL: L.ENTRY_VALUE},
            "publishNotReadyAddresses": True,
        },
    }


def min_role_replicas(template: Template, role: Role) -> int:
    """Role replicas that must be placed together; the whole role when gangPolicy says nothing."""
    wanted = template.min_role_replicas.get(role.name)
    return role.replicas if wanted is None else min(int(wanted), role.replicas)


def podgroup_spec(ms: ModelServing, template: Template, subgroups: bool = True) -> Json:
    """Kthena's PodGroup spec (podgroupmanager/manager.go) for a ServingGroup built from `template`."""
    min_member = 0
    resources: ResourceTotals = {}
    for role in template.roles:
        n = min_role_replicas(template, role)
        min_member += role.pods_per_replica * n
        add(resources, container_requests(role.entry_template["spec"]), n)
        if role.worker_template is not None:
            add(resources, container_requests(role.worker_template["spec"]), n * role.worker_replicas)
    spec: Json = {"minMember": min_member, "minResources": to_resource_list(resources)}
    queue = ms.annotations.get(L.QUEUE_NAME_ANNOTATION)
    if queue:
        spec["queue"] = queue
    if template.group_policy:
        spec["networkTopology"] = dict(template.group_policy)
    if subgroups:
        policies: list[Json] = []
        for role in template.roles:
            policy: Json = {
                "name": role.name,
                "labelSelector": {"matchLabels": {L.NAME_LABEL: ms.name, L.ROLE_LABEL: role.name}},
                "matchLabelKeys": [L.ROLE_ID_LABEL],
                "subGroupSize": role.pods_per_replica,
                "minSubGroups": min_role_replicas(template, role),
            }
            if template.role_policy:
                policy["networkTopology"] = dict(template.role_policy)
            policies.append(policy)
        spec["subGroupPolicy"] = policies
    return spec


def podgroup(ms: ModelServing, template: Template, ordinal: int, subgroups: bool = True) -> Json:
    group = group_name(ms.name, ordinal)
    return {
        "apiVersion": f"{L.PODGROUP_GROUP}/{L.PODGROUP_VERSION}",
        "kind": "PodGroup",
        "metadata": {
            "name": group,
            "namespace": ms.namespace,
            "labels": {L.NAME_LABEL: ms.name, L.GROUP_NAME_LABEL: group},
            "annotations": {L.KUBE_GROUP_NAME_ANNOTATION: group},
            "ownerReferences": [owner_reference(ms)],
        },
        "spec": podgroup_spec(ms, template, subgroups),
    }


@dataclass(frozen=True)
class GroupObjects:
    podgroup: Json | None
    pods: list[Json]
    services: list[Json]


def serving_group(ms: ModelServing, template: Template, ordinal: int, revision: str,
                  options: PodOptions) -> GroupObjects:
    """Every object of a complete ServingGroup built from `template` at `revision`."""
    pods: list[Json] = []
    services: list[Json] = []
    for role in template.roles:
        for index in range(role.replicas):
            pods.extend(role_replica_pods(ms, ordinal, role, index, revision, options))
            svc = headless_service(ms, ordinal, role, index)
            if svc is not None:
                services.append(svc)
    pg = podgroup(ms, template, ordinal, options.subgroups) if options.podgroups and ms.uses_podgroups else None
    return GroupObjects(pg, pods, services)


def label_selector(ms: ModelServing) -> str:
    """One pod per ServingGroup (the entry of replica 0 of the first role), for HPA/KEDA via /scale."""
    first = ms.template.roles[0].name
    selector = {L.NAME_LABEL: ms.name, L.ENTRY_LABEL: L.ENTRY_VALUE, L.ROLE_LABEL: first,
                L.ROLE_ID_LABEL: role_id(first, 0)}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
