"""vc-scheduler on the `small` topology: gangs with network-topology constraints.

These run on a private cluster (see conftest.py): they need most of the GPUs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from caldera.localcluster import wait
from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster

GROUP, VERSION = "scheduling.volcano.sh", "v1beta1"


@pytest.fixture
def apis(private_cluster: LocalCluster) -> Iterator[tuple[client.CoreV1Api, client.CustomObjectsApi]]:
    api = private_cluster.api_client()
    yield client.CoreV1Api(api), client.CustomObjectsApi(api)
    api.close()


def _pod(name: str, group: str, gpus: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": {"scheduling.k8s.io/group-name": group}},
        "spec": {
            "schedulerName": "volcano",
            "containers": [{"name": "main", "image": "registry.invalid/idle:1",
                            "resources": {"requests": {"nvidia.com/gpu": str(gpus)},
                                          "limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
    }


def _podgroup(name: str, min_member: int, gpus: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PodGroup",
        "metadata": {"name": name},
        "spec": {"minMember": min_member, "queue": "default", "minResources": {"nvidia.com/gpu": str(gpus)}, **spec},
    }


def _create(apis: tuple[client.CoreV1Api, client.CustomObjectsApi], ns: str, podgroup: dict[str, Any],
            pods: list[dict[str, Any]]) -> None:
    core, custom = apis
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "podgroups", podgroup)
    for pod in pods:
        core.create_namespaced_pod(ns, pod)


def _running_leaves(core: client.CoreV1Api, ns: str, names: list[str]) -> dict[str, str] | None:
    """pod name -> leaf HyperNode of its node, once every pod is Running; else None."""
    pods = {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}
    if any(n not in pods or pods[n].status.phase != "Running" for n in names):
        return None
    nodes = {n.metadata.name: n.metadata.labels for n in core.list_node().items}
    return {n: nodes[pods[n].spec.node_name]["caldera.dev/leaf"] for n in names}


def test_hard_tier1_gang_runs_inside_one_tier1_hypernode(apis: Any, private_namespace: str) -> None:
    names = [f"w{i}" for i in range(4)]
    _create(apis, private_namespace,
            _podgroup("gang", 4, 16, networkTopology={"mode": "hard", "highestTierAllowed": 1}),
            [_pod(n, "gang", 4) for n in names])
    leaves = wait.until(lambda: _running_leaves(apis[0], private_namespace, names), 90, "4 pods Running")
    assert len(set(leaves.values())) == 1


def test_gang_too_big_for_tier1_stays_pending_with_volcano_reason(apis: Any, private_namespace: str) -> None:
    core, custom = apis
    # 5 x 8 GPUs = 40 GPUs; a tier-1 HyperNode of `small` has 32.
    _create(apis, private_namespace,
            _podgroup("big", 5, 40, networkTopology={"mode": "hard", "highestTierAllowed": 1}),
            [_pod(f"b{i}", "big", 8) for i in range(5)])

    def unschedulable_condition() -> dict[str, Any] | None:
        pg = custom.get_namespaced_custom_object(GROUP, VERSION, private_namespace, "podgroups", "big")
        conditions = (pg.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Unschedulable" and c.get("message")), None)

    condition = wait.until(unschedulable_condition, 60, "PodGroup condition Unschedulable")
    phases = {p.status.phase for p in core.list_namespaced_pod(private_namespace).items}
    assert phases == {"Pending"} and condition["status"] == "True"


def test_subgroup_policy_keeps_each_subgroup_inside_one_tier1_hypernode(apis: Any, private_namespace: str) -> None:
    # Two sub-groups of 3 pods x 8 GPUs (24 GPUs each): they cannot share one 32-GPU leaf,
    # and each must stay inside one leaf.
    names = {f"{role}{i}": role for role in ("a", "b") for i in range(3)}
    policy = [{
        "name": "role",
        "labelSelector": {"matchLabels": {"app": "sg"}},
        "matchLabelKeys": ["role-id"],
        "subGroupSize": 3,
        "minSubGroups": 2,
        "networkTopology": {"mode": "hard", "highestTierAllowed": 1},
    }]
    _create(apis, private_namespace,
            _podgroup("sg", 6, 48, networkTopology={"mode": "hard", "highestTierAllowed": 2}, subGroupPolicy=policy),
            [_pod(n, "sg", 8, {"app": "sg", "role-id": role}) for n, role in names.items()])
    leaves = wait.until(lambda: _running_leaves(apis[0], private_namespace, list(names)), 90, "6 pods Running")
    by_role = {role: {leaves[n] for n, r in names.items() if r == role} for role in ("a", "b")}
    assert [len(v) for v in by_role.values()] == [1, 1]


def test_podgroup_schema_has_subgroup_policy(private_cluster: LocalCluster) -> None:
    ext = client.ApiextensionsV1Api(private_cluster.api_client())
    crd = ext.read_custom_resource_definition("podgroups.scheduling.volcano.sh")
    spec = crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"]
    assert "subGroupPolicy" in spec.properties
