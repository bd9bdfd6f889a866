"""The process runner: marked pods become real processes on their loopback pod IP."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from caldera.localcluster import wait
from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster

PORT = 8080


def _http_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                                                   "prometheus.io/path": "/"}},
        "spec": {
            "schedulerName": "volcano",
            "containers": [{"name": "web", "image": "caldera/process:latest",
                            "command": ["python", "-m", "http.server"],
                            "args": ["--bind", "$(POD_IP)", str(PORT)],
                            "ports": [{"containerPort": PORT}]}],
        },
    }


def _running_ip(core: client.CoreV1Api, ns: str, name: str) -> str | None:
    pod = core.read_namespaced_pod(name, ns)
    return pod.status.pod_ip if pod.status.phase == "Running" and pod.status.pod_ip else None


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def core(local_cluster: LocalCluster) -> Iterator[client.CoreV1Api]:
    api = local_cluster.api_client()
    yield client.CoreV1Api(api)
    api.close()


def test_marked_pod_gets_an_ip_from_the_loopback_pod_network(local_cluster: LocalCluster, core: client.CoreV1Api,
                                                             cluster_namespace: str) -> None:
    core.create_namespaced_pod(cluster_namespace, _http_pod("web"))
    ip = wait.until(lambda: _running_ip(core, cluster_namespace, "web"), 60, "pod Running with an IP")
    network = ipaddress.ip_network(local_cluster.pod_network)
    assert ipaddress.ip_address(ip) in network and network.subnet_of(ipaddress.ip_network("127.0.0.0/8"))


def test_marked_pod_is_reachable_over_http_at_its_pod_ip(core: client.CoreV1Api, cluster_namespace: str) -> None:
    core.create_namespaced_pod(cluster_namespace, _http_pod("web"))
    ip = wait.until(lambda: _running_ip(core, cluster_namespace, "web"), 60, "pod Running with an IP")
    assert wait.until(lambda: _answers(f"http://{ip}:{PORT}/"), 30, f"HTTP answer from {ip}:{PORT}")


def test_process_is_gone_after_the_pod_is_deleted(local_cluster: LocalCluster, core: client.CoreV1Api,
                                                  cluster_namespace: str) -> None:
    pod = core.create_namespaced_pod(cluster_namespace, _http_pod("web"))
    ip = wait.until(lambda: _running_ip(core, cluster_namespace, "web"), 60, "pod Running with an IP")
    pid_file = local_cluster.pod_pid_file(pod.metadata.uid, "web")
    pid = int(wait.until(lambda: pid_file.exists() and pid_file.read_text(), 30, "runner pid file"))
    wait.until(lambda: _answers(f"http://{ip}:{PORT}/"), 30, "HTTP answer")
    core.delete_namespaced_pod("web", cluster_namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("web", cluster_namespace)
            return False
        except ApiException as err:
            if err.status != 404:
                raise
        return not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"

    assert wait.until(gone, 60, "pod deleted and its process gone")
    assert not _answers(f"http://{ip}:{PORT}/")


def test_prometheus_lists_an_annotated_pod_as_target(local_cluster: LocalCluster, core: client.CoreV1Api,
                                                     cluster_namespace: str) -> None:
    core.create_namespaced_pod(cluster_namespace, _http_pod("web"))
    ip = wait.until(lambda: _running_ip(core, cluster_namespace, "web"), 60, "pod Running with an IP")

    def target() -> dict[str, Any] | None:
        data = httpx.get(f"{local_cluster.prometheus_url}/api/v1/targets", timeout=5).json()["data"]
        return next((t for t in data["activeTargets"]
                     if t["labels"].get("namespace") == cluster_namespace and t["labels"].get("pod") == "web"), None)

    found = wait.until(target, 60, "Prometheus target for the pod")
    assert found["labels"]["instance"] == f"{ip}:{PORT}"


def test_marked_pod_is_ready_only_once_its_process_listens(core: client.CoreV1Api, cluster_namespace: str) -> None:
    core.create_namespaced_pod(cluster_namespace, _http_pod("web"))

    def ready_ip() -> str | None:
        pod = core.read_namespaced_pod("web", cluster_namespace)
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return pod.status.pod_ip if ready else None

    ip = wait.until(ready_ip, 60, "pod Ready")
    assert _answers(f"http://{ip}:{PORT}/")
