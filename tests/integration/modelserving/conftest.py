"""Fixtures for the ModelServing controller on the local cluster.

`controller_proc` starts `caldera controller --placement=volcano` as a real subprocess,
standalone (no peering) and restricted to this session's namespaces (`ms-<session>-*`), so
it never touches objects of other test sessions sharing the cluster. `ms_env` gives a fresh
namespace inside that pattern and a small client for the assertions.
"""

from __future__ import annotations

import copy
import json
import os
import signal
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
from kubernetes.client.exceptions import ApiException

from caldera.localcluster import wait
from caldera.localcluster.processes import terminate
from caldera.localcluster.session import LocalCluster

GROUP, VERSION, PLURAL = "workload.serving.volcano.sh", "v1alpha1", "modelservings"
NAME_LABEL = "modelserving.volcano.sh/name"
SESSION = uuid.uuid4().hex[:6]


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` after `timeout`."""
    return wait.until(check, timeout, what, interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod_template(image: str = "registry.local/engine:v1", gpus: int = 1) -> dict[str, Any]:
    return {"spec": {"containers": [{
        "name": "engine", "image": image,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi", "nvidia.com/gpu": str(gpus)},
                      "limits": {"nvidia.com/gpu": str(gpus)}},
    }]}}


def seed_manifest(name: str = "sample", replicas: int = 1, image: str = "registry.local/engine:v1") -> dict[str, Any]:
    """Kthena's seed example: prefill 2x(1+1), decode 1x(1+1), groupPolicy tier 2, rolePolicy tier 1."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelServing",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": "volcano",
            "replicas": replicas,
            "template": {
                "networkTopology": {"groupPolicy": {"mode": "hard", "highestTierAllowed": 2},
                                    "rolePolicy": {"mode": "hard", "highestTierAllowed": 1}},
                "roles": [
                    {"name": "prefill", "replicas": 2, "workerReplicas": 1,
                     "entryTemplate": pod_template(image), "workerTemplate": pod_template(image)},
                    {"name": "decode", "replicas": 1, "workerReplicas": 1,
                     "entryTemplate": pod_template(image), "workerTemplate": pod_template(image)},
                ],
            },
        },
    }


class Controller:
    """A `caldera controller` subprocess; can be SIGKILLed and restarted."""

    def __init__(self, kubeconfig: Path, namespace_pattern: str, log_dir: Path,
                 args: tuple[str, ...] = ("--peering", ""), name: str = "", placement: str = "volcano") -> None:
        self.args = args
        self.placement = placement
        self.name = name or namespace_pattern.strip("*")
        self.kubeconfig = kubeconfig
        self.pattern = namespace_pattern
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0

    def start(self, wait: bool = True) -> None:
        """Launch the process; with `wait`, return once it reports ready."""
        self.metrics_port = free_port()
        self.starts += 1
        log = open(self.log_dir / f"controller-{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caldera.cli", "--log-format", "json", "controller", f"--placement={self.placement}",
             *self.args, "--no-webhooks", "--namespace", self.pattern,
             "--metrics-port", str(self.metrics_port), "--health-port", "0"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_until("controller readiness", self.ready, timeout=60)

    def serving(self) -> bool:
        """The metrics endpoint answers (ready or not): the operator is about to start."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller exited with {self.proc.returncode}; see {self.log_dir}")
        try:
            httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller exited with {self.proc.returncode}; see {self.log_dir}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)


class Env:
    """A namespace watched by a controller, the reads the tests need, and the shared helpers
    (tests cannot import this conftest under --import-mode=importlib)."""

    wait_until = staticmethod(wait_until)
    seed_manifest = staticmethod(seed_manifest)
    pod_template = staticmethod(pod_template)

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.api = cluster.api_client()
        # Any: the client's annotations say `object` for custom objects and the typed model for
        # raw (_preload_content=False) responses; the tests read plain JSON dicts.
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)

    # -- ModelServing -------------------------------------------------------------------------
    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(manifest)
        body["metadata"]["namespace"] = self.namespace
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body))

    def ms(self, name: str = "sample") -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))

    def patch_ms(self, patch: dict[str, Any], name: str = "sample") -> dict[str, Any]:
        return dict(self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch))

    def scale(self, replicas: int, name: str = "sample") -> dict[str, Any]:
        """What `kubectl scale modelserving/<name> --replicas=N` sends: a patch of the /scale subresource."""
        return dict(self.custom.patch_namespaced_custom_object_scale(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"replicas": replicas}}))

    def set_image(self, image: str, name: str = "sample") -> None:
        ms = self.ms(name)
        for role in ms["spec"]["template"]["roles"]:
            for key in ("entryTemplate", "workerTemplate"):
                if role.get(key):
                    role[key]["spec"]["containers"][0]["image"] = image
        self.patch_ms({"spec": {"template": {"roles": ms["spec"]["template"]["roles"]}}}, name)

    # -- children -----------------------------------------------------------------------------
    def pods(self, name: str = "sample") -> dict[str, dict[str, Any]]:
        out = self.core.list_namespaced_pod(self.namespace, label_selector=f"{NAME_LABEL}={name}",
                                            _preload_content=False)
        return {p["metadata"]["name"]: p for p in json.loads(out.data)["items"]}

    def live_pods(self, name: str = "sample") -> dict[str, dict[str, Any]]:
        return {n: p for n, p in self.pods(name).items() if not p["metadata"].get("deletionTimestamp")}

    def services(self, name: str = "sample") -> dict[str, dict[str, Any]]:
        out = self.core.list_namespaced_service(self.namespace, label_selector=f"{NAME_LABEL}={name}",
                                                _preload_content=False)
        return {s["metadata"]["name"]: s for s in json.loads(out.data)["items"]}

    def podgroups(self, name: str = "sample") -> dict[str, dict[str, Any]]:
        out = self.custom.list_namespaced_custom_object("scheduling.volcano.sh", "v1beta1", self.namespace,
                                                        "podgroups", label_selector=f"{NAME_LABEL}={name}")
        return {p["metadata"]["name"]: p for p in out["items"]}

    def running(self, names: set[str], name: str = "sample") -> bool:
        pods = self.live_pods(name)
        return set(pods) == names and all(
            p["status"].get("phase") == "Running"
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
            for p in pods.values())

    def available(self, name: str = "sample") -> bool:
        ms = self.ms(name)
        status = ms.get("status") or {}
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return (conds.get("Available") == "True" and status.get("observedGeneration") == ms["metadata"]["generation"]
                and status.get("availableReplicas") == ms["spec"]["replicas"]
                and status.get("updatedReplicas") == ms["spec"]["replicas"])

    def delete_all(self) -> None:
        for ms in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]:
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                            ms["metadata"]["name"])
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def close(self) -> None:
        self.api.close()

    @staticmethod
    def seed_pod_names(group: str = "sample-0") -> set[str]:
        return {f"{group}-prefill-0-0", f"{group}-prefill-0-1", f"{group}-prefill-1-0", f"{group}-prefill-1-1",
                f"{group}-decode-0-0", f"{group}-decode-0-1"}


@pytest.fixture(scope="session")
def controller_proc(local_cluster: LocalCluster) -> Iterator[Controller]:
    ctl = Controller(local_cluster.kubeconfig, f"ms-{SESSION}-*", local_cluster.dir / "logs")
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


def _namespace(cluster: LocalCluster, prefix: str) -> Iterator[Env]:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    env = Env(cluster, name)
    env.core.create_namespace({"metadata": {"name": name, "labels": {"caldera.dev/test": "true"}}})
    try:
        yield env
    finally:
        # ModelServings go first, while their controller still runs to release kopf's finalizer.
        env.delete_all()
        try:
            wait_until("ModelServings deleted", lambda: not env.custom.list_namespaced_custom_object(
                GROUP, VERSION, name, PLURAL)["items"], timeout=60)
        finally:
            env.core.delete_namespace(name, propagation_policy="Background")
            env.close()


@pytest.fixture
def ms_env(local_cluster: LocalCluster, controller_proc: Controller) -> Iterator[Env]:
    yield from _namespace(local_cluster, f"ms-{SESSION}")


@pytest.fixture(scope="session")
def caldera_placement_controller(local_cluster: LocalCluster) -> Iterator[Controller]:
    """The same controller with `--placement=caldera`: pods are gated until the placement controller plans them."""
    ctl = Controller(local_cluster.kubeconfig, f"msc-{SESSION}-*", local_cluster.dir / "logs", placement="caldera")
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture
def caldera_env(local_cluster: LocalCluster, caldera_placement_controller: Controller) -> Iterator[Env]:
    yield from _namespace(local_cluster, f"msc-{SESSION}")


@pytest.fixture
def chaos_controller(local_cluster: LocalCluster) -> Iterator[Controller]:
    ctl = Controller(local_cluster.kubeconfig, f"chaos-{SESSION}-*", local_cluster.dir / "logs")
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture
def chaos_env(local_cluster: LocalCluster, chaos_controller: Controller) -> Iterator[Env]:
    yield from _namespace(local_cluster, f"chaos-{SESSION}")


@pytest.fixture
def unstarted_controller(local_cluster: LocalCluster) -> Iterator[Controller]:
    """A controller of its own namespace pattern (`nsw-<session>-*`), started by the test."""
    ctl = Controller(local_cluster.kubeconfig, f"nsw-{SESSION}-*", local_cluster.dir / "logs")
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture
def controller_pair(local_cluster: LocalCluster) -> Iterator[tuple[Controller, Controller, str]]:
    """Two replicas sharing one peering name: `leader` (priority 200) and `standby` (priority 100)."""
    pattern = f"lead-{SESSION}-*"
    peering = f"caldera-test-{SESSION}"
    common = ("--peering", peering, "--peering-lifetime", "10")
    leader = Controller(local_cluster.kubeconfig, pattern, local_cluster.dir / "logs",
                        (*common, "--priority", "200"), name=f"lead-{SESSION}-leader")
    standby = Controller(local_cluster.kubeconfig, pattern, local_cluster.dir / "logs",
                         (*common, "--priority", "100"), name=f"lead-{SESSION}-standby")
    leader.start()
    standby.start()
    try:
        yield leader, standby, pattern
    finally:
        standby.stop()
        leader.stop()


@pytest.fixture
def pair_env(local_cluster: LocalCluster, controller_pair: tuple[Controller, Controller, str]) -> Iterator[Env]:
    yield from _namespace(local_cluster, f"lead-{SESSION}")


@pytest.fixture
def seed() -> dict[str, Any]:
    return seed_manifest()
