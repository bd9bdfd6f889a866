"""A private cluster and `caldera controller` serving its admission webhooks to it.

Webhook configurations are cluster-wide: a controller that registers them (and one that is
killed while they point at it, failurePolicy Fail) would reject other areas' objects on the
shared `local_cluster`. So these tests bring up their own `small` cluster, like
tests/integration/cluster/conftest.py (a conftest cannot be imported under importlib mode).
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
from typing import Any, cast

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.localcluster import session, wait
from caldera.localcluster.processes import terminate
from caldera.localcluster.session import LocalCluster
from webhooks.kinds import BY_KIND

CONFIGURATION = "caldera.volcano.sh"  # caldera.controller.WEBHOOK_CONFIGURATION


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebhookController:
    """`caldera controller` with its webhooks on, as a subprocess; stopped with SIGTERM or SIGKILL."""

    def __init__(self, kubeconfig: Path, work_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.work_dir = work_dir
        self.tls_dir = work_dir / "webhook-tls"
        self.webhook_port = free_port()
        self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.metrics_port = free_port()
        self.starts += 1
        log = open(self.work_dir / f"controller-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caldera.cli", "--log-format", "json", "controller", "--placement=volcano",
             "--peering", "", "--metrics-port", str(self.metrics_port), "--health-port", "0",
             "--webhook-port", str(self.webhook_port), "--tls-dir", str(self.tls_dir)],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)}, stdout=log, stderr=subprocess.STDOUT)
        wait.until(self.ready, 90, "controller readiness", 0.2)

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller exited with {self.proc.returncode}; see {self.work_dir}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def url_prefix(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}/"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


class Admission:
    """The reads and writes the tests make through the API server, in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.registration = client.AdmissionregistrationV1Api(api)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(manifest)
        body["metadata"]["namespace"] = self.namespace
        resource = BY_KIND[body["kind"]]
        return cast(dict[str, Any], self.custom.create_namespaced_custom_object(
            resource.group, resource.version, self.namespace, resource.plural, body))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        resource = BY_KIND[kind]
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(
            resource.group, resource.version, self.namespace, resource.plural, name))

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        resource = BY_KIND[kind]
        return cast(dict[str, Any], self.custom.patch_namespaced_custom_object(
            resource.group, resource.version, self.namespace, resource.plural, name, patch))

    def rejection(self, action: Callable[[], Any]) -> str:
        """The API server's error message for a write that must be refused."""
        try:
            action()
        except ApiException as exc:
            assert exc.status in (400, 422), f"unexpected status {exc.status}: {exc.body}"
            return str(json.loads(exc.body or "{}").get("message", exc.body))
        raise AssertionError("the API server admitted the object")

    def webhooks(self) -> tuple[list[Any], list[Any]]:
        """The (validating, mutating) webhooks of Caldera's kopf-managed configurations."""
        validating = self.registration.read_validating_webhook_configuration(CONFIGURATION).webhooks or []
        mutating = self.registration.read_mutating_webhook_configuration(CONFIGURATION).webhooks or []
        return validating, mutating


@pytest.fixture(scope="session")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with session.private(tmp_path_factory.mktemp("webhooks-cluster"), label="webhooks private_cluster") as cluster:
        yield cluster


def _registered(ctl: WebhookController, admission: Admission) -> bool:
    try:
        validating, mutating = admission.webhooks()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    hooks = [*validating, *mutating]
    return len(hooks) == 2 * len(BY_KIND) and all(
        (h.client_config.url or "").startswith(ctl.url_prefix) and h.client_config.ca_bundle for h in hooks)


def start_and_register(ctl: WebhookController, admission: Admission) -> None:
    """Start the controller and wait until kopf has pointed both configurations at it."""
    ctl.start()
    wait.until(lambda: _registered(ctl, admission), 60, "webhook configurations pointing at the controller", 0.2)


@pytest.fixture
def namespace(private_cluster: LocalCluster) -> Iterator[Admission]:
    name = f"wh-{uuid.uuid4().hex[:8]}"
    api = private_cluster.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield Admission(api, name)
    finally:
        # Objects with kopf's finalizer stay until a controller releases it; the cluster is
        # private and torn down after the session, so the namespace is not waited for.
        core.delete_namespace(name, propagation_policy="Background")
        api.close()


@pytest.fixture(scope="module")
def webhook_controller(private_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[WebhookController]:
    """One controller for a module's tests, registered before the first one runs."""
    ctl = WebhookController(private_cluster.kubeconfig, tmp_path_factory.mktemp("webhook-controller"))
    api = private_cluster.api_client()
    try:
        start_and_register(ctl, Admission(api, "default"))
        yield ctl
    finally:
        ctl.stop()
        api.close()


@pytest.fixture
def start_registered() -> Callable[[WebhookController, Admission], None]:
    """`start_and_register`, for tests (they cannot import this conftest)."""
    return start_and_register


@pytest.fixture
def fresh_controller(private_cluster: LocalCluster, tmp_path: Path) -> Iterator[WebhookController]:
    """A controller a test may stop or kill (not yet started)."""
    ctl = WebhookController(private_cluster.kubeconfig, tmp_path)
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture
def admission(namespace: Admission, webhook_controller: WebhookController) -> Admission:
    return namespace
