"""The control plane itself: garbage collection, queues, nodes, status."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from kubernetes import client
from kubernetes.client.rest import ApiException

from caldera.localcluster import wait
from caldera.localcluster.cli import cluster_command
from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster


def test_deleting_an_owner_deletes_its_dependents(local_cluster: LocalCluster, cluster_namespace: str) -> None:
    core = client.CoreV1Api(local_cluster.api_client())
    owner = core.create_namespaced_config_map(cluster_namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(cluster_namespace, {"metadata": {
        "name": "dependent",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}],
    }})
    core.delete_namespaced_config_map("owner", cluster_namespace, propagation_policy="Background")

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", cluster_namespace)
        except ApiException as err:
            return err.status == 404
        return False

    assert wait.until(dependent_gone, 60, "dependent ConfigMap deleted by the garbage collector")


def test_default_queue_is_open(local_cluster: LocalCluster) -> None:
    custom = client.CustomObjectsApi(local_cluster.api_client())
    queue = custom.get_cluster_custom_object("scheduling.volcano.sh", "v1beta1", "queues", "default")
    assert queue["status"]["state"] == "Open"


def test_new_queue_becomes_open(local_cluster: LocalCluster) -> None:
    custom = client.CustomObjectsApi(local_cluster.api_client())
    name = "t-open-queue"
    custom.create_cluster_custom_object("scheduling.volcano.sh", "v1beta1", "queues",
                                        {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "Queue",
                                         "metadata": {"name": name}, "spec": {"weight": 1}})
    try:
        state = wait.until(lambda: (custom.get_cluster_custom_object(
            "scheduling.volcano.sh", "v1beta1", "queues", name).get("status") or {}).get("state") == "Open",
            60, "new queue Open")
        assert state
    finally:
        custom.delete_cluster_custom_object("scheduling.volcano.sh", "v1beta1", "queues", name)


def test_small_topology_nodes_are_ready_with_eight_gpus(local_cluster: LocalCluster) -> None:
    nodes = client.CoreV1Api(local_cluster.api_client()).list_node(label_selector="caldera.dev/topology=small").items
    ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
    assert [n.status.allocatable["nvidia.com/gpu"] for n in ready] == ["8"] * 8


def test_small_topology_hypernodes_exist(local_cluster: LocalCluster) -> None:
    custom = client.CustomObjectsApi(local_cluster.api_client())
    items = custom.list_cluster_custom_object("topology.volcano.sh", "v1alpha1", "hypernodes")["items"]
    assert {(h["metadata"]["name"], h["spec"]["tier"]) for h in items} >= {
        ("leaf-0", 1), ("leaf-1", 1), ("spine-0", 2)}


def test_status_reports_every_component_healthy(local_cluster: LocalCluster) -> None:
    result = CliRunner().invoke(cluster_command, ["status", "--json", "--dir", str(local_cluster.dir)])
    report = json.loads(result.output)
    assert report["healthy"] and all(c["healthy"] for c in report["components"].values())
