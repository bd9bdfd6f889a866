"""An engine pod (image caldera/enginesim) runs a real enginesim process on its pod IP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kubernetes import client

from caldera.localcluster import wait
from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster

PORT = 8000


def _engine_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "engine", "annotations": {"prometheus.io/scrape": "true",
                                                       "prometheus.io/port": str(PORT)}},
        "spec": {
            "schedulerName": "volcano",
            "containers": [{"name": "engine", "image": "caldera/enginesim:latest",
                            "args": ["--model", "sim-8b", "--served-model-name", "sim-8b"],
                            "ports": [{"containerPort": PORT}],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
    }


def _models(url: str) -> list[str] | None:
    try:
        response = httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        return None
    return [m["id"] for m in response.json()["data"]] if response.status_code == 200 else None


def test_engine_pod_serves_its_model_at_the_pod_ip(local_cluster: LocalCluster, cluster_namespace: str) -> None:
    core = client.CoreV1Api(local_cluster.api_client())
    core.create_namespaced_pod(cluster_namespace, _engine_pod())

    def pod_ip() -> str | None:
        pod = core.read_namespaced_pod("engine", cluster_namespace)
        return pod.status.pod_ip if pod.status.phase == "Running" else None

    ip = wait.until(pod_ip, 60, "engine pod Running")
    models = wait.until(lambda: _models(f"http://{ip}:{PORT}/v1/models"), 60, "enginesim answering /v1/models")
    assert models == ["sim-8b"]


def test_engine_pod_metrics_are_scraped_by_prometheus(local_cluster: LocalCluster, cluster_namespace: str) -> None:
    core = client.CoreV1Api(local_cluster.api_client())
    core.create_namespaced_pod(cluster_namespace, _engine_pod())

    def healthy_target() -> bool:
        data = httpx.get(f"{local_cluster.prometheus_url}/api/v1/targets", timeout=5).json()["data"]
        return any(t["labels"].get("namespace") == cluster_namespace and t["health"] == "up"
                   for t in data["activeTargets"])

    assert wait.until(healthy_target, 90, "Prometheus scraping the engine pod (health up)")
