"""The extender path on the local cluster: a vc-scheduler with the extender plugin binds a gang
where `caldera placement extender` planned it, and leaves an infeasible gang unbound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from caldera.localcluster import build, processes, wait
from caldera.localcluster.session import LocalCluster

SCHEDULER = "caldera-extender"
REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def extender(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[str]:
    """`caldera placement extender` plus a second vc-scheduler (scheduler name caldera-extender) using it."""
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig)}
    ext_log = open(tmp_path / "extender.log", "wb")  # noqa: SIM115
    ext = subprocess.Popen([sys.executable, "-m", "caldera.cli", "placement", "extender", "--port", str(port),
                            "--kubeconfig", str(local_cluster.kubeconfig)], env=env, stdout=ext_log,
                           stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if ext.poll() is not None:
            raise AssertionError(f"extender exited; see {tmp_path / 'extender.log'}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    conf = yaml.safe_load((REPO / "deploy" / "volcano-extender" / "volcano-scheduler.yaml").read_text())
    for tier in conf["tiers"]:
        for plugin in tier["plugins"]:
            if plugin["name"] == "extender":
                plugin["arguments"]["extender.urlPrefix"] = url
    conf_path = tmp_path / "scheduler.yaml"
    conf_path.write_text(yaml.safe_dump(conf))
    sched_log = open(tmp_path / "vc-scheduler.log", "wb")  # noqa: SIM115
    sched = None
    try:
        wait.until(healthy, 30, "extender health", 0.2)
        sched = subprocess.Popen([
            str(build.binary("vc-scheduler")), f"--kubeconfig={local_cluster.kubeconfig}", "--leader-elect=false",
            f"--scheduler-conf={conf_path}", f"--scheduler-name={SCHEDULER}", "--enable-healthz=true",
            f"--healthz-address=127.0.0.1:{_free_port()}", "--enable-metrics=true",
            f"--listen-address=127.0.0.1:{_free_port()}", "--cache-dumper=false", "--schedule-period=500ms",
            "--logtostderr=true", "--v=3"], stdout=sched_log, stderr=subprocess.STDOUT)
        yield url
    finally:
        if sched is not None:
            processes.terminate(sched)
        processes.terminate(ext)
        ext_log.close()
        sched_log.close()


def _gang(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, name: str,
          pods_per_role: int, gpus: int) -> list[str]:
    """A PodGroup with one sub-group per role replica (rolePolicy tier 1) and its pods, ungated."""
    policy = {"name": "engine", "labelSelector": {"matchLabels": {"app": name}}, "matchLabelKeys": ["role-id"],
              "subGroupSize": pods_per_role, "minSubGroups": 2,
              "networkTopology": {"mode": "hard", "highestTierAllowed": 1}}
    podgroup: Any = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
                     "metadata": {"name": name, "namespace": namespace},
                     "spec": {"minMember": 2 * pods_per_role, "subGroupPolicy": [policy],
                              "networkTopology": {"mode": "hard", "highestTierAllowed": 2}}}
    custom.create_namespaced_custom_object("scheduling.volcano.sh", "v1beta1", namespace, "podgroups", podgroup)
    names = []
    for role_id in ("prefill-0", "decode-0"):
        for k in range(pods_per_role):
            pod_name = f"{name}-{role_id}-{k}"
            pod: Any = {"metadata": {"name": pod_name, "namespace": namespace,
                                     "labels": {"app": name, "role-id": role_id},
                                     "annotations": {"scheduling.k8s.io/group-name": name,
                                                     "volcano.sh/task-spec": role_id}},
                        "spec": {"schedulerName": SCHEDULER, "containers": [{
                            "name": "engine", "image": "registry.local/engine:v1",
                            "resources": {"requests": {"cpu": "100m", "nvidia.com/gpu": str(gpus)},
                                          "limits": {"nvidia.com/gpu": str(gpus)}}}]}}
            core.create_namespaced_pod(namespace, pod)
            names.append(pod_name)
    return names


def _pods(core: client.CoreV1Api, namespace: str) -> dict[str, dict[str, Any]]:
    out: Any = core.list_namespaced_pod(namespace, _preload_content=False)
    return {p["metadata"]["name"]: p for p in json.loads(out.data)["items"]}


@pytest.mark.cluster
def test_volcano_with_the_extender_binds_a_gang_on_the_planned_nodes(
        local_cluster: LocalCluster, cluster_namespace: str, extender: str) -> None:
    api = local_cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    names = _gang(core, custom, cluster_namespace, "gang", pods_per_role=2, gpus=1)

    def bound() -> dict[str, dict[str, Any]] | None:
        pods = _pods(core, cluster_namespace)
        return pods if all(pods[n]["spec"].get("nodeName") for n in names) else None

    pods = wait.until(bound, 120, "gang bound by the extender scheduler", 0.5)
    planned = httpx.get(f"{extender}/debug/plans", timeout=5).json()["planned"]
    for n in names:
        assert pods[n]["spec"]["nodeName"] == planned[f"{cluster_namespace}/{n}"]
    for role_id in ("prefill-0", "decode-0"):
        nodes = {pods[n]["spec"]["nodeName"] for n in names if role_id in n}
        leaves = {node_labels(core, node).get("caldera.dev/leaf") for node in nodes}
        assert len(leaves) == 1


@pytest.mark.cluster
def test_the_extender_keeps_an_infeasible_gang_unbound_and_says_why(
        local_cluster: LocalCluster, cluster_namespace: str, extender: str) -> None:
    api = local_cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    names = _gang(core, custom, cluster_namespace, "huge", pods_per_role=5, gpus=8)
    job = f"{cluster_namespace}/huge"
    reasons = wait.until(lambda: httpx.get(f"{extender}/debug/plans", timeout=5).json()["unplaceable"].get(job),
                         60, "the extender's reason for the gang", 0.5)
    assert "rolePolicy" in reasons
    pods = _pods(core, cluster_namespace)
    assert not any(pods[n]["spec"].get("nodeName") for n in names)


def node_labels(core: client.CoreV1Api, node: str) -> dict[str, str]:
    found: Any = core.read_node(node)
    labels: dict[str, str] = found.metadata.labels or {}
    return labels
