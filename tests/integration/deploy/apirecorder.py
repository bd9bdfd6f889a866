"""Helpers (imported by the deploy integration tests) for running Caldera's components on the local cluster as the chart's ServiceAccounts.

`ApiRecorder` is a transparent HTTP proxy in front of the real kube-apiserver: the component
talks plain HTTP to it on loopback with its ServiceAccount token, the proxy forwards every
request over TLS (verifying the cluster CA) and streams the answer back, watches included,
and records (method, path, query, status). `requests_as_grants` turns those records into the
(apiGroup, resource, verb) triples RBAC decides on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import yaml
from aiohttp import web
from kubernetes import client

from caldera import helm
from caldera.localcluster.session import LocalCluster

ROOT = Path(__file__).resolve().parents[3]
PERMISSIONS = yaml.safe_load((ROOT / "deploy" / "helm" / "caldera" / "files" / "permissions.yaml").read_text())
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ClusterKopfPeering"}
Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0, interval: float = 0.5) -> None:
    """Poll `check` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        threading.Event().wait(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Record:
    method: str
    path: str
    query: str
    status: int


@dataclass
class ApiRecorder:
    upstream: str
    ca_data: bytes
    records: list[Record] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}}
        body = await request.read()
        # Transparent: a body sent without Content-Type (the kubernetes client's custom-object creates)
        # must not reach the API server as application/octet-stream (415).
        skip = () if "content-type" in {k.lower() for k in headers} else ("Content-Type",)
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, skip_auto_headers=skip,
                                         timeout=aiohttp.ClientTimeout(total=None)) as upstream:
            self.records.append(Record(request.method, request.path, request.query_string, upstream.status))
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items()
                # Bodies pass through undecoded, so Content-Encoding (gzip) must pass through too.
                if k.lower() not in {"content-length", "transfer-encoding", "connection"}})
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientPayloadError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
            return response

    async def _start(self, ready: threading.Event) -> None:
        context = ssl.create_default_context(cadata=self.ca_data.decode())
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    _session: aiohttp.ClientSession | None = None

    def start(self) -> ApiRecorder:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start(ready))
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the recording proxy did not start"
        return self

    def stop(self) -> None:
        assert self._loop is not None

        async def shutdown() -> None:
            # Close the upstream side first: it ends the watches still streaming through us.
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def request_grant(record: Record) -> Grant | None:
    """The RBAC (apiGroup, resource, verb) a request needs; None for discovery and non-resource URLs."""
    parts = [p for p in record.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None  # discovery of a group/version
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    elif rest[0] == "namespaces":
        rest = ["namespaces", *rest[1:]]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    query = parse_qs(record.query)
    method = record.method.upper()
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch", ["false"])[0] in {"true", "1"} else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    return (group, resource, verb)


def requests_as_grants(records: list[Record]) -> set[Grant]:
    return {g for g in (request_grant(r) for r in records) if g is not None}


def rare_grants(component: str) -> set[Grant]:
    """Grants the file marks as needed only in situations the integration run does not reach."""
    return {(g, r, v) for e in PERMISSIONS[component] for g in e["apiGroups"] for r in e["resources"]
            for v in e.get("rareVerbs", [])}


def declared_grants(component: str, conditions: frozenset[str] = frozenset()) -> set[Grant]:
    return {(g, r, v) for e in PERMISSIONS[component] if not e.get("when") or e["when"] in conditions
            for g in e["apiGroups"] for r in e["resources"] for v in e["verbs"]}


@dataclass
class Run:
    """What one component did as its ServiceAccount: the recorded requests, its log and how far it got."""

    records: list[Record]
    log: str
    reached: dict[str, bool]
    failure: str = ""

    def explain(self) -> str:
        problems = [line for line in self.log.splitlines() if '"level": "error"' in line or '"level": "warning"' in line]
        return (f"{self.failure}\nforbidden: {forbidden(self)}\n--- warnings and errors ---\n"
                + "\n".join(problems[-15:]) + f"\n--- log tail ---\n{self.log[-2000:]}")


def forbidden(run: Run) -> list[str]:
    """The requests the API server refused (403), as `METHOD path`."""
    return sorted({f"{r.method} {r.path}" for r in run.records if r.status == 403})


def ungranted(run: Run, component: str, conditions: frozenset[str] = frozenset()) -> set[Grant]:
    """Grants the run used that the chart does not declare for `component` under `conditions`."""
    return requests_as_grants(run.records) - declared_grants(component, conditions)


def unused_grants(run: Run, component: str, conditions: frozenset[str] = frozenset()) -> set[Grant]:
    """Grants the chart declares for `component` under `conditions` that the run never used."""
    return declared_grants(component, conditions) - requests_as_grants(run.records)


@dataclass
class Release:
    """The chart's RBAC for one release, applied to the local cluster."""

    name: str
    namespace: str
    objects: list[dict[str, Any]]
    cluster: LocalCluster

    def service_account(self, component: str) -> str:
        return f"{self.name}-caldera-{component}"

    def kubeconfig(self, component: str, server: str, directory: Path) -> Path:
        """A kubeconfig that authenticates as the component's ServiceAccount with a TokenRequest token."""
        api = self.cluster.api_client()
        try:
            issued = client.CoreV1Api(api).create_namespaced_service_account_token(
                self.service_account(component), self.namespace,
                client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                  expiration_seconds=3600)))
        finally:
            api.close()
        assert issued.status is not None, "the API server issued no token"
        token = issued.status.token
        path = directory / f"{component}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "local", "cluster": {"server": server}}],
            "users": [{"name": component, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "local", "user": component,
                                                    "namespace": self.namespace}}],
        }))
        return path


def cluster_ca(local_cluster: LocalCluster) -> bytes:
    kubeconfig = yaml.safe_load(local_cluster.kubeconfig.read_text())
    return base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])


def apply(local_cluster: LocalCluster, objects: list[dict[str, Any]]) -> None:
    from caldera.localcluster.resources import Client

    Client(local_cluster.kubeconfig).apply_objects(objects)


def delete(local_cluster: LocalCluster, objects: list[dict[str, Any]]) -> None:
    from kubernetes import dynamic

    api = local_cluster.api_client()
    dyn = dynamic.DynamicClient(api)
    for obj in reversed(objects):
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        with contextlib.suppress(client.exceptions.ApiException):
            dyn.delete(resource, name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"))
    api.close()


@contextlib.contextmanager
def chart_release(local_cluster: LocalCluster, prefix: str, values: Callable[[str], dict[str, Any]]
                  ) -> Iterator[tuple[Release, list[dict[str, Any]]]]:
    """The chart rendered with `values(namespace)` for a fresh labelled namespace, its RBAC applied for
    real; yields the release and everything rendered, then deletes the RBAC and the namespace."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    namespace = f"{name}-ns"
    api = local_cluster.api_client()
    try:
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=namespace, labels={"caldera.dev/test": "true"})))
    finally:
        api.close()
    rendered = helm.template(values(namespace), release=name, namespace=namespace)
    objects = [o for o in rendered if o["kind"] in RBAC_KINDS]
    apply(local_cluster, objects)
    try:
        yield Release(name, namespace, objects, local_cluster), rendered
    finally:
        delete(local_cluster, objects)
        api = local_cluster.api_client()
        client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")
        api.close()


@dataclass
class Component:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def run_component(args: list[str], log: Path, kubeconfig: Path) -> Component:
    """`caldera <args>` with only `kubeconfig`'s credentials (KUBECONFIG as well: kopf's login reads it)."""
    handle = log.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "caldera.cli", "--log-format", "json", *args,
                                f"--kubeconfig={kubeconfig}"],
                               stdout=handle, stderr=subprocess.STDOUT,
                               env={**os.environ, "KUBECONFIG": str(kubeconfig)}, start_new_session=True)
    handle.close()
    return Component(process, log)


