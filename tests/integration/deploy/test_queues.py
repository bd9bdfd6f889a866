"""Volcano queues for multi-tenancy: a ModelServing's `scheduling.volcano.sh/queue-name`
annotation puts its gangs in that queue, and a gang beyond the queue's capacity waits whole
(every pod Pending, none bound) instead of starting half a model; it starts whole once the
queue has room."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apirecorder import Component, free_port, run_component, wait_until
from kubernetes import client

from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster

GROUP, VERSION = "workload.serving.volcano.sh", "v1alpha1"


def queue(name: str, gpus: int) -> dict[str, Any]:
    capability = {"cpu": "64", "memory": "256Gi", "nvidia.com/gpu": str(gpus)}
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "Queue", "metadata": {"name": name},
            "spec": {"weight": 1, "reclaimable": False, "capability": capability}}


def team_model(name: str, queue_name: str, replicas: int, gpus_per_pod: int = 4) -> dict[str, Any]:
    container = {"name": "engine", "image": "example.com/noop:1",
                 "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": str(gpus_per_pod)},
                               "limits": {"nvidia.com/gpu": str(gpus_per_pod)}}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServing",
        "metadata": {"name": name, "annotations": {"scheduling.volcano.sh/queue-name": queue_name}},
        "spec": {"replicas": replicas, "schedulerName": "volcano", "template": {"roles": [{
            "name": "server", "replicas": 1, "workerReplicas": 1,
            "entryTemplate": {"spec": {"containers": [container]}},
            "workerTemplate": {"spec": {"containers": [container]}},
        }]}},
    }


def group_pods(api: client.ApiClient, namespace: str, group: str) -> list[Any]:
    return client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"modelserving.volcano.sh/group-name={group}").items


def running(pods: list[Any]) -> int:
    return sum(1 for p in pods if p.status.phase == "Running")


def bound(pods: list[Any]) -> int:
    return sum(1 for p in pods if p.spec.node_name)


def podgroup(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "scheduling.volcano.sh", "v1beta1", namespace, "podgroups", name)
        return obj
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete_and_wait(api: client.ApiClient, namespace: str, name: str) -> None:
    """Delete a ModelServing and wait until the (still running) controller has let it go."""
    custom = client.CustomObjectsApi(api)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "modelservings", name)

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelservings", name)
        except client.exceptions.ApiException as exc:
            return exc.status == 404
        return False

    wait_until(f"ModelServing {namespace}/{name} to be deleted", gone, 90)


def held_back_by_volcano(api: client.ApiClient, namespace: str, name: str) -> bool:
    """Volcano has looked at the PodGroup and holds it back with a reason: Pending (not admitted
    by the queue) or Inqueue with an Unschedulable condition (admitted, but nothing allocated)."""
    pg = podgroup(api, namespace, name)
    if pg is None:
        return False
    status = pg.get("status") or {}
    unschedulable = any(c.get("type") == "Unschedulable" and c.get("status") == "True"
                        for c in status.get("conditions") or [])
    return (status.get("phase") == "Pending" and bool(status.get("conditions"))) or (
        status.get("phase") == "Inqueue" and unschedulable)


@pytest.fixture
def team_queue(local_cluster: LocalCluster) -> Iterator[str]:
    name = f"team-{uuid.uuid4().hex[:6]}"
    api = local_cluster.api_client()
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object("scheduling.volcano.sh", "v1beta1", "queues", queue(name, 8))
    wait_until(f"queue {name} to be Open", lambda: (custom.get_cluster_custom_object(
        "scheduling.volcano.sh", "v1beta1", "queues", name).get("status") or {}).get("state") == "Open", 60)
    try:
        yield name
    finally:
        # Free the queue first: Volcano refuses to delete a queue that still holds PodGroups.
        custom.delete_cluster_custom_object("scheduling.volcano.sh", "v1beta1", "queues", name)
        api.close()


@pytest.fixture
def controller(local_cluster: LocalCluster, cluster_namespace: str, tmp_path: Path) -> Iterator[Component]:
    """`caldera controller` for this namespace only (standalone, no webhooks: other tests' controllers own those)."""
    component = run_component([
        "controller", f"--namespace={cluster_namespace}", "--peering=", "--no-webhooks",
        f"--metrics-port={free_port()}", f"--health-port={free_port()}"],
        tmp_path / "controller.log", local_cluster.kubeconfig)
    try:
        yield component
    finally:
        component.stop()


def test_gang_beyond_the_queue_capacity_waits_whole_and_starts_whole_when_room_appears(
        local_cluster: LocalCluster, cluster_namespace: str, team_queue: str, controller: Component) -> None:
    api = local_cluster.api_client()
    custom = client.CustomObjectsApi(api)
    ns = cluster_namespace
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelservings", team_model("llm", team_queue, 1))
    wait_until("the first gang (8 GPUs) to run inside the 8-GPU queue",
               lambda: running(group_pods(api, ns, "llm-0")) == 2, 120)

    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modelservings", "llm", {"spec": {"replicas": 2}})
    wait_until("the second gang's pods to exist", lambda: len(group_pods(api, ns, "llm-1")) == 2, 60)
    wait_until("Volcano to hold the second gang back", lambda: held_back_by_volcano(api, ns, "llm-1"), 60)
    assert bound(group_pods(api, ns, "llm-1")) == 0, controller.text()[-2000:]
    assert running(group_pods(api, ns, "llm-0")) == 2

    custom.patch_cluster_custom_object("scheduling.volcano.sh", "v1beta1", "queues", team_queue,
                                       {"spec": {"capability": {"nvidia.com/gpu": "16"}}})
    wait_until("the second gang to start whole once the queue has room",
               lambda: running(group_pods(api, ns, "llm-1")) == 2, 120)
    delete_and_wait(api, ns, "llm")
    api.close()


def test_podgroup_is_put_in_the_annotated_queue(
        local_cluster: LocalCluster, cluster_namespace: str, team_queue: str, controller: Component) -> None:
    api = local_cluster.api_client()
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, cluster_namespace, "modelservings", team_model("tagged", team_queue, 1))
    wait_until("the PodGroup", lambda: podgroup(api, cluster_namespace, "tagged-0") is not None, 60)
    pg = podgroup(api, cluster_namespace, "tagged-0")
    assert pg is not None and pg["spec"]["queue"] == team_queue
    delete_and_wait(api, cluster_namespace, "tagged")
    api.close()


def test_gang_larger_than_the_whole_queue_never_partially_starts(
        local_cluster: LocalCluster, cluster_namespace: str, team_queue: str, controller: Component) -> None:
    api = local_cluster.api_client()
    # One gang of two 8-GPU pods (16 GPUs) in an 8-GPU queue: the cluster has room, the queue does not.
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, cluster_namespace, "modelservings", team_model("big", team_queue, 1, gpus_per_pod=8))
    wait_until("the gang's pods to exist", lambda: len(group_pods(api, cluster_namespace, "big-0")) == 2, 60)
    wait_until("Volcano to hold the gang back", lambda: held_back_by_volcano(api, cluster_namespace, "big-0"), 60)
    pods = group_pods(api, cluster_namespace, "big-0")
    assert bound(pods) == 0 and running(pods) == 0
    delete_and_wait(api, cluster_namespace, "big")
    api.close()


@pytest.fixture
def queues_example(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[client.ApiClient]:
    """examples/queues/ applied as shipped (queues, namespaces, both teams' models) with a controller."""
    from apirecorder import ROOT, apply, delete

    docs = [d for name in ("queues.yaml", "team-a.yaml", "team-b.yaml")
            for d in yaml.safe_load_all((ROOT / "examples" / "queues" / name).read_text()) if d]
    base = [d for d in docs if d["kind"] in {"Queue", "Namespace"}]
    models = [d for d in docs if d["kind"] == "ModelServing"]
    apply(local_cluster, base)
    api = local_cluster.api_client()
    custom = client.CustomObjectsApi(api)
    for q in (d for d in base if d["kind"] == "Queue"):
        wait_until(f"queue {q['metadata']['name']} to be Open", lambda q=q: (custom.get_cluster_custom_object(
            "scheduling.volcano.sh", "v1beta1", "queues", q["metadata"]["name"]).get("status") or {}).get(
            "state") == "Open", 60)
    controller = run_component([
        "controller", "--namespace=team-a", "--namespace=team-b", "--peering=", "--no-webhooks",
        f"--metrics-port={free_port()}", f"--health-port={free_port()}"], tmp_path / "controller.log",
        local_cluster.kubeconfig)
    apply(local_cluster, models)
    try:
        yield api
    finally:
        for model in models:  # while the controller runs, so its finalizers are released
            delete_and_wait(api, model["metadata"]["namespace"], model["metadata"]["name"])
        controller.stop()
        # Namespaces and queues go in the background (deleting a namespace waits for its pods).
        delete(local_cluster, [d for d in base if d["kind"] == "Namespace"])
        delete(local_cluster, [d for d in base if d["kind"] == "Queue"])
        api.close()


def test_shipped_queue_example_runs_team_a_whole_and_holds_one_team_b_gang_whole(
        queues_example: client.ApiClient) -> None:
    api = queues_example
    wait_until("team-a's two gangs to run (16 GPUs in a 32-GPU queue)", lambda: all(
        running(group_pods(api, "team-a", f"llama-70b-{i}")) == 2 for i in (0, 1)), 180)
    # Both gangs are created in one reconcile, so their creation times tie and Volcano may
    # start either one first: one runs whole, the other is held back whole.
    gangs = ("llama-70b-0", "llama-70b-1")
    wait_until("one of team-b's gangs to run (8 GPUs in an 8-GPU queue)",
               lambda: any(running(group_pods(api, "team-b", g)) == 2 for g in gangs), 180)
    held = next(g for g in gangs if running(group_pods(api, "team-b", g)) != 2)
    try:
        wait_until("team-b's other gang to exist and be held back by Volcano", lambda: len(
            group_pods(api, "team-b", held)) == 2 and held_back_by_volcano(api, "team-b", held), 120)
    except AssertionError as exc:
        pods = [(p.metadata.name, p.status.phase, p.spec.node_name, p.spec.scheduling_gates)
                for p in group_pods(api, "team-b", held)]
        raise AssertionError(f"{exc}; podgroup: {podgroup(api, 'team-b', held)}; pods: {pods}") from None
    assert bound(group_pods(api, "team-b", held)) == 0
