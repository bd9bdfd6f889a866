"""Fixtures for the placement controller and the extender on the local cluster.

`placement_env` runs `caldera controller --placement=caldera` (ModelServing handlers + the
placement controller) as a real subprocess restricted to one fresh namespace, so ModelServing
pods are created behind the `caldera.dev/placement` gate and released by the plan.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from caldera.localcluster import processes, wait
from caldera.localcluster.session import LocalCluster

GROUP, VERSION, PLURAL = "workload.serving.volcano.sh", "v1alpha1", "modelservings"
NAME_LABEL = "modelserving.volcano.sh/name"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod_template(gpus: int) -> dict[str, Any]:
    return {"spec": {"containers": [{
        "name": "engine", "image": "registry.local/engine:v1",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi", "nvidia.com/gpu": str(gpus)},
                      "limits": {"nvidia.com/gpu": str(gpus)}},
    }]}}


def modelserving(name: str, roles: list[tuple[str, int, int, int]], group_tier: int = 2,
                 role_tier: int = 1) -> dict[str, Any]:
    """roles: (name, replicas, workerReplicas, GPUs per pod)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServing", "metadata": {"name": name},
        "spec": {"schedulerName": "volcano", "replicas": 1, "template": {
            "networkTopology": {"groupPolicy": {"mode": "hard", "highestTierAllowed": group_tier},
                                "rolePolicy": {"mode": "hard", "highestTierAllowed": role_tier}},
            "roles": [{"name": r, "replicas": n, "workerReplicas": w, "entryTemplate": pod_template(g),
                       "workerTemplate": pod_template(g)} for r, n, w, g in roles],
        }},
    }


class PlacementEnv:
    """A namespace watched by a `caldera controller --placement=caldera`, and the reads tests need
    (tests cannot import this conftest under --import-mode=importlib, hence the static helpers)."""

    modelserving = staticmethod(modelserving)
    free_port = staticmethod(free_port)

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
        return wait.until(check, timeout, what, 0.2)

    def apply(self, manifest: dict[str, Any]) -> None:
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": self.namespace}}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def pods(self, name: str) -> dict[str, dict[str, Any]]:
        out: Any = self.core.list_namespaced_pod(self.namespace, label_selector=f"{NAME_LABEL}={name}",
                                            _preload_content=False)
        return {p["metadata"]["name"]: p for p in json.loads(out.data)["items"]}

    def events(self, reason: str) -> list[dict[str, Any]]:
        out: Any = self.core.list_namespaced_event(self.namespace, _preload_content=False)
        return [e for e in json.loads(out.data)["items"] if e.get("reason") == reason]

    def hypernode_of(self, node: str) -> str:
        """The tier-1 HyperNode holding `node`."""
        listed: Any = self.custom.list_cluster_custom_object("topology.volcano.sh", "v1alpha1", "hypernodes")
        for hn in listed["items"]:
            if hn["spec"]["tier"] == 1 and any(
                    m["selector"].get("exactMatch", {}).get("name") == node for m in hn["spec"]["members"]):
                return str(hn["metadata"]["name"])
        raise AssertionError(f"node {node} is in no tier-1 HyperNode")


@pytest.fixture
def deadline_seconds() -> str:
    """The placement controller's re-plan deadline; a test overrides this fixture to shorten it."""
    return "120"


@pytest.fixture
def placement_env(local_cluster: LocalCluster, tmp_path: Path, deadline_seconds: str) -> Iterator[PlacementEnv]:
    namespace = f"pl-{uuid.uuid4().hex[:8]}"
    api = local_cluster.api_client()
    core = client.CoreV1Api(api)
    body: Any = {"metadata": {"name": namespace, "labels": {"caldera.dev/test": "true"}}}
    core.create_namespace(body)
    port = free_port()
    log = open(tmp_path / "controller.log", "wb")  # noqa: SIM115
    env = {**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig),
           "CALDERA_PLACEMENT_WINDOW_SECONDS": "0.3", "CALDERA_PLACEMENT_TICK_SECONDS": "2",
           "CALDERA_PLACEMENT_DEADLINE_SECONDS": deadline_seconds}
    proc = subprocess.Popen(
        [sys.executable, "-m", "caldera.cli", "--log-format", "json", "controller", "--placement=caldera",
         "--peering", "", "--no-webhooks", "--namespace", namespace, "--metrics-port", str(port),
         "--health-port", "0"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"controller exited with {proc.returncode}; see {tmp_path / 'controller.log'}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait.until(ready, 60, "controller readiness", 0.2)
        yield PlacementEnv(local_cluster, namespace)
    finally:
        processes.terminate(proc)
        log.close()
        # Shown by pytest only when the test fails: the controller's own account of what it planned.
        tail = (tmp_path / "controller.log").read_text(errors="replace").splitlines()[-40:]
        print("controller log (last 40 lines):", *tail, sep="\n")
        core.delete_namespace(namespace, propagation_policy="Background")
        api.close()
