"""What the cluster can still place, per GPU type, from Node and Pod objects (pure).

Free GPUs per node are allocatable minus what non-terminal pods bound (or planned) there
request (`topology.kube`). Nodes are grouped by their GPU type label; a variant's new
replicas are limited by the free GPUs of its type (`autoscaler.optimizer.Placeable`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from topology.kube import node_from_object, pod_usage

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def free_gpus_by_type(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
                      resource: str = GPU_RESOURCE, type_label: str = GPU_PRODUCT_LABEL) -> dict[str, list[int]]:
    used: dict[str, int] = {}
    for pod in pods:
        usage = pod_usage(pod)
        if usage is not None:
            _, node, request = usage
            used[node] = used.get(node, 0) + request.get(resource, 0)
    out: dict[str, list[int]] = {}
    for obj in nodes:
        info = node_from_object(obj)
        total = info.allocatable.get(resource, 0)
        gpu_type = info.labels.get(type_label)
        if total <= 0 or gpu_type is None or not info.schedulable:
            continue
        out.setdefault(gpu_type, []).append(max(0, total - used.get(info.name, 0)))
    return out


def _templates(ms: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    roles = ((ms.get("spec") or {}).get("template") or {}).get("roles") or []
    out = []
    for role in roles:
        for key in ("entryTemplate", "workerTemplate"):
            if role.get(key):
                out.append(role[key])
    return out


def gpu_type_of(ms: Mapping[str, Any], type_label: str = GPU_PRODUCT_LABEL) -> str | None:
    """The GPU type a ModelServing's pods select (node selector or required affinity)."""
    for tpl in _templates(ms):
        spec = tpl.get("spec") or {}
        if type_label in (spec.get("nodeSelector") or {}):
            return str(spec["nodeSelector"][type_label])
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
        for term in required.get("nodeSelectorTerms") or []:
            for expr in term.get("matchExpressions") or []:
                if expr.get("key") == type_label and expr.get("operator") == "In" and len(expr.get("values") or []) == 1:
                    return str(expr["values"][0])
    return None


def gpus_per_pod(ms: Mapping[str, Any], resource: str = GPU_RESOURCE) -> tuple[int, int]:
    """(largest GPU request of one pod, pods per replica) of a ModelServing."""
    from topology.kube import pod_request

    roles = ((ms.get("spec") or {}).get("template") or {}).get("roles") or []
    largest, pods = 0, 0
    for role in roles:
        replicas = int(role.get("replicas", 1))
        workers = int(role.get("workerReplicas", 0))
        entry = pod_request((role.get("entryTemplate") or {}).get("spec") or {}).get(resource, 0)
        worker = pod_request((role.get("workerTemplate") or {}).get("spec") or {}).get(resource, 0)
        largest = max(largest, entry, worker if workers else 0)
        pods += replicas * (1 + workers)
    return largest, max(pods, 1)
