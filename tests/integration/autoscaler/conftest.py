"""Fixtures for the autoscaler on the local cluster.

`as_controller` runs `caldera controller` as a real subprocess (ModelServing and autoscaler
handlers; ticks every 2 s via CALDERA_AUTOSCALER_PERIOD_SECONDS), standalone and restricted
to this session's namespaces (`as-<session>-*`). `as_env` is a fresh namespace with the
reads and writes the tests need, a real load generator against enginesim pods included.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.localcluster import wait
from caldera.localcluster.processes import terminate
from caldera.localcluster.session import LocalCluster

GROUP, VERSION = "workload.serving.volcano.sh", "v1alpha1"
NAME_LABEL = "modelserving.volcano.sh/name"
ROLE_LABEL = "modelserving.volcano.sh/role"
SESSION = uuid.uuid4().hex[:6]
PORT = 8000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_role(name: str, replicas: int = 1, gpus: int = 1, gpu_type: str | None = None) -> dict[str, Any]:
    """One role of single-pod replicas running enginesim: 4 running requests at most, slow tokens,
    so a closed-loop client keeps a steady number of requests in flight."""
    spec: dict[str, Any] = {"containers": [{
        "name": "engine", "image": "caldera/enginesim:latest",
        "args": ["--model", "sim", "--served-model-name", "sim", "--max-num-seqs", "4",
                 "--inter-token-latency", "40"],
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)},
                      "requests": {"cpu": "100m", "memory": "128Mi", "nvidia.com/gpu": str(gpus)}},
    }]}
    if gpu_type:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": gpu_type}
    return {"name": name, "replicas": replicas, "workerReplicas": 0, "entryTemplate": {
        "metadata": {"annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT)}},
        "spec": spec}}


def modelserving(name: str, roles: list[dict[str, Any]], replicas: int = 1,
                 annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServing",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"schedulerName": "volcano", "replicas": replicas, "template": {"roles": roles}}}


class Controller:
    def __init__(self, cluster: LocalCluster, pattern: str) -> None:
        self.cluster = cluster
        self.pattern = pattern
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()

    def start(self) -> None:
        log_dir = self.cluster.dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / f"autoscaler-controller-{SESSION}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "CALDERA_AUTOSCALER_PERIOD_SECONDS": "2"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caldera.cli", "--log-format", "json", "controller", "--placement=volcano",
             "--peering", "", "--no-webhooks", "--namespace", self.pattern,
             "--metrics-port", str(self.metrics_port), "--health-port", "0"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        wait.until(self.ready, 60, "controller readiness")

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller exited with {self.proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)


class Load:
    """A closed-loop load generator in its own thread: `concurrency` clients, each sending a
    completion to one of the given engines as soon as its previous one finishes."""

    def __init__(self, urls: list[str], concurrency: int, prompt_words: int = 8, max_tokens: int = 100) -> None:
        self.urls, self.concurrency = urls, concurrency
        self.prompt = " ".join(["word"] * prompt_words)
        self.max_tokens = max_tokens
        self.done = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    async def _client(self, i: int) -> None:
        assert self._stop is not None
        async with httpx.AsyncClient(timeout=120) as http:
            while not self._stop.is_set():
                url = self.urls[i % len(self.urls)]
                try:
                    await http.post(f"{url}/v1/completions", json={
                        "model": "sim", "prompt": self.prompt, "max_tokens": self.max_tokens})
                    self.done += 1
                except httpx.HTTPError:
                    # The engine is going away; back off instead of spinning.
                    await asyncio.wait([asyncio.ensure_future(self._stop.wait())], timeout=0.2)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        clients = [asyncio.ensure_future(self._client(i)) for i in range(self.concurrency)]
        await self._stop.wait()
        for c in clients:
            c.cancel()
        await asyncio.gather(*clients, return_exceptions=True)

    def start(self) -> Load:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)


class Env:
    engine_role = staticmethod(engine_role)
    modelserving = staticmethod(modelserving)
    Load = Load

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def create(self, plural: str, manifest: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(manifest)
        body["metadata"]["namespace"] = self.namespace
        return cast(dict[str, Any], self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body))

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name))

    def replicas(self, name: str) -> int:
        return int(self.get("modelservings", name)["spec"]["replicas"])

    def role_replicas(self, name: str, role: str) -> int:
        roles = self.get("modelservings", name)["spec"]["template"]["roles"]
        return int(next(r["replicas"] for r in roles if r["name"] == role))

    def ready_engines(self, name: str, role: str | None = None) -> list[str]:
        selector = f"{NAME_LABEL}={name}" + (f",{ROLE_LABEL}={role}" if role else "")
        out = self.core.list_namespaced_pod(self.namespace, label_selector=selector, _preload_content=False)
        urls = []
        for p in json.loads(cast(Any, out).data)["items"]:
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
            if ready and p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp"):
                urls.append(f"http://{p['status']['podIP']}:{PORT}")
        return sorted(urls)

    def serving(self, name: str, count: int, role: str | None = None) -> list[str]:
        """Wait until `count` engines answer /v1/models; their URLs."""
        def check() -> list[str] | None:
            urls = self.ready_engines(name, role)
            if len(urls) < count:
                return None
            for url in urls:
                try:
                    if httpx.get(f"{url}/v1/models", timeout=1).status_code != 200:
                        return None
                except httpx.HTTPError:
                    return None
            return urls
        return list(wait.until(check, 120, f"{count} engines of {name} {role or ''} serving"))

    def events(self, involved: str) -> list[dict[str, Any]]:
        out = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={involved}",
                                              _preload_content=False)
        return list(json.loads(cast(Any, out).data)["items"])

    def delete_all(self) -> None:
        for plural in ("autoscalingpolicybindings", "autoscalingpolicies", "modelservings"):
            listed = cast(dict[str, Any], self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural))
            for obj in listed["items"]:
                try:
                    self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural,
                                                                obj["metadata"]["name"])
                except ApiException as exc:
                    if exc.status != 404:
                        raise


@pytest.fixture(scope="session")
def as_controller(local_cluster: LocalCluster) -> Iterator[Controller]:
    ctl = Controller(local_cluster, f"as-{SESSION}-*")
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture
def as_env(local_cluster: LocalCluster, as_controller: Controller) -> Iterator[Env]:
    name = f"as-{SESSION}-{uuid.uuid4().hex[:6]}"
    env = Env(local_cluster, name)
    env.core.create_namespace(cast(Any, {"metadata": {"name": name, "labels": {"caldera.dev/test": "true"}}}))
    try:
        yield env
    finally:
        env.delete_all()
        try:
            wait.until(lambda: not cast(dict[str, Any], env.custom.list_namespaced_custom_object(
                GROUP, VERSION, name, "modelservings"))["items"], 60, "ModelServings deleted")
        finally:
            env.core.delete_namespace(name, propagation_policy="Background")
            env.api.close()

