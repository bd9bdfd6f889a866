"""Gateway API mode against the real API server, with enginesim pods run by the process runner.

The Gateway API and InferencePool CRDs are the upstream ones, fetched from their Go modules
(caldera.localcluster.gatewaycrds). Test names mirror Kthena's gateway-api and
gateway-inference-extension e2e suites.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client

from caldera.localcluster import gatewaycrds, processes
from caldera.localcluster.session import LocalCluster
from router import debug
from router.api import GROUP, VERSION
from router.config import RouterConfig
from router.gateway import discovery as gateway_discovery
from router.gateway.discovery import GatewayDiscovery
from router.gateway.harness import self_signed, tls_secret
from router.gateway.mode import GatewayMode
from router.harness import free_port, wait_until
from router.server import Router

pytestmark = pytest.mark.cluster

GW = ("gateway.networking.k8s.io", "v1")
INF = ("inference.networking.k8s.io", "v1")


@pytest.fixture(scope="module")
def gateway_crds(local_cluster: LocalCluster) -> Iterator[None]:
    api = local_cluster.api_client()
    try:
        gatewaycrds.install(api, progress=print)
    finally:
        api.close()
    yield


# ---- manifests ---------------------------------------------------------------------------------


def engine_pod(name: str, app: str, model: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"schedulerName": "volcano", "containers": [{
                "name": "engine", "image": "caldera/enginesim:latest",
                "args": ["--model", model, "--time-scale", "20"],
                "ports": [{"containerPort": 8000}], "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def gateway(name: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name},
            "spec": {"gatewayClassName": "kthena-router",
                     "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


def http_route(name: str, gateway_name: str, pool: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway_name}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                                 "name": pool}]}]}}


def inference_pool(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}}}}


def model_server(name: str, app: str, model: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServer", "metadata": {"name": name},
            "spec": {"model": model, "inferenceEngine": "vLLM", "workloadPort": {"port": 8000},
                     "workloadSelector": {"matchLabels": {"app": app}}}}


def model_route(name: str, model: str, server: str, gateway_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"modelName": model, "rules": [{"targetModels": [{"modelServerName": server}]}]}
    if gateway_name is not None:
        spec["parentRefs"] = [{"name": gateway_name, "kind": "Gateway"}]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRoute", "metadata": {"name": name}, "spec": spec}


# ---- the cluster and the router ----------------------------------------------------------------


@dataclass
class Kube:
    ns: str
    core: client.CoreV1Api
    custom: client.CustomObjectsApi

    def create(self, group_version: tuple[str, str], plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(group_version[0], group_version[1], self.ns, plural, body)

    def delete(self, group_version: tuple[str, str], plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(group_version[0], group_version[1], self.ns, plural, name)

    def pods(self, app: str, model: str, count: int) -> None:
        for i in range(count):
            self.core.create_namespaced_pod(self.ns, engine_pod(f"{app}-{i}", app, model))  # type: ignore[arg-type]


@pytest.fixture
def kube(local_cluster: LocalCluster, cluster_namespace: str, gateway_crds: None) -> Iterator[Kube]:
    api = local_cluster.api_client()
    try:
        yield Kube(cluster_namespace, client.CoreV1Api(api), client.CustomObjectsApi(api))
    finally:
        api.close()


@dataclass
class RunningGatewayRouter:
    router: Router
    mode: GatewayMode
    discovery: GatewayDiscovery

    @property
    def port(self) -> int:
        return self.router.config.port

    def members(self, key: str) -> int:
        return len(self.router.state.members.get(key, []))


@contextlib.asynccontextmanager
async def gateway_router(local_cluster: LocalCluster, ns: str, inference_extension: bool = True,
                         crds: dict[str, tuple[str, str, str]] | None = None, default_gateway: bool = False,
                         tls_secrets: bool = False) -> AsyncIterator[RunningGatewayRouter]:
    """The router as `caldera router --enable-gateway-api[-inference-extension]` runs it, in-process
    (without Kthena's default Gateway unless asked: most tests create their own `default`)."""
    config = RouterConfig.model_validate({
        "port": free_port(), "metricsInterval": 0.2, "kvEvents": False, "accessLog": False,
        "gateway": {"enableGatewayAPI": True, "enableGatewayAPIInferenceExtension": inference_extension,
                    "defaultGateway": {"create": default_gateway}, "tlsSecrets": tls_secrets}})
    router = Router(config)
    mode = GatewayMode(router, config.gateway)
    disc = GatewayDiscovery(router.state, mode, kubeconfig=str(local_cluster.kubeconfig), namespace=ns,
                            on_synced=lambda: setattr(router, "ready", True), crds=crds or gateway_discovery.KINDS)
    debug.ConfigDump(router, debug.discovery_source(disc), mode).install(router.app)
    runner = web.AppRunner(router.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    await mode.bind(runner)
    await disc.start()
    try:
        await wait_until(lambda: router.ready, timeout=60)
        yield RunningGatewayRouter(router, mode, disc)
    finally:
        await disc.stop()
        await mode.close()
        await runner.cleanup()


async def chat(port: int, model: str, text: str = "hello") -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": text}]},
            timeout=aiohttp.ClientTimeout(total=30)) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


async def served(port: int, model: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """The response once the route answers 200 (listeners and endpoints converge asynchronously)."""
    try:
        result = await chat(port, model)
    except (aiohttp.ClientConnectionError, TimeoutError):
        return None
    return result if result[0] == 200 else None


# ---- gateway-inference-extension ---------------------------------------------------------------


async def test_gateway_inference_extension(local_cluster: LocalCluster, kube: Kube) -> None:
    """TestGatewayInferenceExtension: HTTPRoute -> InferencePool, pods picked by the scheduler."""
    gw_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 2)
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-1-5b", "ds-1-5b"))
    kube.create(GW, "gateways", gateway("default", gw_port))
    kube.create(GW, "httproutes", http_route("llm-route", "default", "deepseek-r1-1-5b"))
    async with gateway_router(local_cluster, kube.ns) as gr:
        pool = f"InferencePool/{kube.ns}/deepseek-r1-1-5b"
        await wait_until(lambda: gr.members(pool) == 2, timeout=120)
        result = await wait_until(lambda: served(gw_port, "deepseek-r1-1.5b"), timeout=60)
        _status, body, headers = result
        assert body["model"] == "deepseek-r1-1.5b"
        assert headers["x-caldera-server"] == pool
        assert headers["x-caldera-pod"] in {f"{kube.ns}/ds-1-5b-0", f"{kube.ns}/ds-1-5b-1"}


async def test_both_apis_configured(local_cluster: LocalCluster, kube: Kube) -> None:
    """TestBothAPIsConfigured: a ModelRoute (parentRefs) and an HTTPRoute on one Gateway."""
    gw_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.pods("ds-7b", "deepseek-r1-7b", 1)
    kube.create((GROUP, VERSION), "modelservers", model_server("deepseek-r1-1-5b", "ds-1-5b", "deepseek-r1-1.5b"))
    kube.create((GROUP, VERSION), "modelroutes", model_route("binding-gateway", "deepseek-r1-1.5b",
                                                             "deepseek-r1-1-5b", "default"))
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-7b", "ds-7b"))
    kube.create(GW, "gateways", gateway("default", gw_port))
    kube.create(GW, "httproutes", http_route("llm-route-7b", "default", "deepseek-r1-7b"))
    async with gateway_router(local_cluster, kube.ns):
        _s, body, headers = await wait_until(lambda: served(gw_port, "deepseek-r1-1.5b"), timeout=120)
        assert headers["x-caldera-server"] == f"{kube.ns}/deepseek-r1-1-5b"
        _s, body, headers = await wait_until(lambda: served(gw_port, "deepseek-r1-7b"), timeout=120)
        assert body["model"] == "deepseek-r1-7b"
        assert headers["x-caldera-server"] == f"InferencePool/{kube.ns}/deepseek-r1-7b"


@contextlib.asynccontextmanager
async def router_process(local_cluster: LocalCluster, ns: str, tmp: Path, name: str) -> AsyncIterator[int]:
    """`caldera router --kubeconfig ... --enable-gateway-api-inference-extension` as its own process."""
    port = free_port()
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "caldera.cli", "router", "--kubeconfig", str(local_cluster.kubeconfig),
             "--namespace", ns, "--port", str(port), "--no-kv-events", "--no-access-log",
             "--enable-gateway-api-inference-extension"], stdout=out, stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as s:
            async def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"router exited: {log.read_text()[-3000:]}")
                try:
                    async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout=60)
        yield port
    finally:
        processes.terminate(proc)


async def test_http_route_not_skipped_after_router_restart(local_cluster: LocalCluster, kube: Kube,
                                                           tmp_path: Path) -> None:
    """TestHTTPRouteNotSkippedAfterRouterRestart: a restarted router process serves the HTTPRoute
    as soon as it is ready (its listener is open and the route resolved, with no retry)."""
    gw_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-1-5b", "ds-1-5b"))
    kube.create(GW, "gateways", gateway("default", gw_port))
    kube.create(GW, "httproutes", http_route("volcano-router-gateway", "default", "deepseek-r1-1-5b"))
    async with router_process(local_cluster, kube.ns, tmp_path, "first"):
        await wait_until(lambda: served(gw_port, "deepseek-r1-1.5b"), timeout=120)
    async with router_process(local_cluster, kube.ns, tmp_path, "restarted"):
        status, body, _ = await chat(gw_port, "deepseek-r1-1.5b")
        assert status == 200 and body["model"] == "deepseek-r1-1.5b"


async def test_gateway_created_later_than_http_route(local_cluster: LocalCluster, kube: Kube) -> None:
    """TestGatewayCreatedLaterThanHTTPRoute: the listener opens, and routes, when the Gateway appears."""
    late_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.create(GW, "httproutes", http_route("late-route", "late-gateway", "deepseek-r1-1-5b"))
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-1-5b", "ds-1-5b"))
    async with gateway_router(local_cluster, kube.ns) as gr:
        await wait_until(lambda: gr.members(f"InferencePool/{kube.ns}/deepseek-r1-1-5b") == 1, timeout=120)
        assert late_port not in gr.mode.listeners.open_ports()
        kube.create(GW, "gateways", gateway("late-gateway", late_port))
        _s, body, _ = await wait_until(lambda: served(late_port, "deepseek-r1-1.5b"), timeout=60)
        assert body["model"] == "deepseek-r1-1.5b"


# ---- gateway-api -------------------------------------------------------------------------------


async def test_duplicate_model_name(local_cluster: LocalCluster, kube: Kube) -> None:
    """TestDuplicateModelName: one model name, two Gateways (ports), two backends."""
    custom_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.pods("ds-7b", "deepseek-r1-7b", 1)
    kube.create((GROUP, VERSION), "modelservers", model_server("deepseek-r1-1-5b", "ds-1-5b", "deepseek-r1-1.5b"))
    kube.create((GROUP, VERSION), "modelservers", model_server("deepseek-r1-7b", "ds-7b", "deepseek-r1-7b"))
    # As Kthena's router, ours creates Gateway `default` on its own port (here in its namespace).
    async with gateway_router(local_cluster, kube.ns, inference_extension=False, default_gateway=True) as gr:
        default: Any = kube.custom.get_namespaced_custom_object(*GW, kube.ns, "gateways", "default")
        assert default["spec"]["listeners"][0]["port"] == gr.port
        kube.create(GW, "gateways", gateway("kthena-gateway-custom", custom_port))
        kube.create((GROUP, VERSION), "modelroutes",
                    model_route("deepseek-simple-default", "deepseek-simple", "deepseek-r1-1-5b", "default"))
        kube.create((GROUP, VERSION), "modelroutes",
                    model_route("deepseek-simple-custom", "deepseek-simple", "deepseek-r1-7b", "kthena-gateway-custom"))
        _s, default_body, _ = await wait_until(lambda: served(gr.port, "deepseek-simple"), timeout=120)
        _s, custom_body, _ = await wait_until(lambda: served(custom_port, "deepseek-simple"), timeout=120)
        assert (default_body["model"], custom_body["model"]) == ("deepseek-r1-1.5b", "deepseek-r1-7b")


async def test_model_route_with_parent_refs_is_not_served_without_its_gateway(local_cluster: LocalCluster,
                                                                              kube: Kube) -> None:
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.create((GROUP, VERSION), "modelservers", model_server("deepseek-r1-1-5b", "ds-1-5b", "deepseek-r1-1.5b"))
    kube.create((GROUP, VERSION), "modelroutes", model_route("plain", "plain", "deepseek-r1-1-5b"))
    kube.create((GROUP, VERSION), "modelroutes", model_route("bound", "bound", "deepseek-r1-1-5b", "nowhere"))
    async with gateway_router(local_cluster, kube.ns, inference_extension=False) as gr:
        await wait_until(lambda: served(gr.port, "plain"), timeout=120)
        status, body, _ = await chat(gr.port, "bound")
        assert status == 404 and body["error"]["code"] == "model_not_found"


async def test_config_dump_shows_watched_gateway_objects(local_cluster: LocalCluster, kube: Kube) -> None:
    gw_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-1-5b", "ds-1-5b"))
    kube.create(GW, "gateways", gateway("default", gw_port))
    kube.create(GW, "httproutes", http_route("llm-route", "default", "deepseek-r1-1-5b"))
    async with gateway_router(local_cluster, kube.ns) as gr:
        await wait_until(lambda: gr.members(f"InferencePool/{kube.ns}/deepseek-r1-1-5b") == 1, timeout=120)
        async with aiohttp.ClientSession() as s:
            dumps = {}
            for kind in debug.KINDS:
                async with s.get(f"http://127.0.0.1:{gr.port}/debug/config_dump/{kind}") as r:
                    dumps[kind] = (await r.json())[kind]
        assert [g["listeners"][0]["open"] for g in dumps["gateways"]] == [True]
        assert dumps["httproutes"][0]["attachedListeners"] == [f"{kube.ns}/default/http"]
        assert [e["name"] for e in dumps["inferencepools"][0]["endpoints"]] == [f"{kube.ns}/ds-1-5b-0"]
        assert dumps["pods"][0]["inferencePools"] == [f"{kube.ns}/deepseek-r1-1-5b"]


async def test_router_serves_model_routes_when_gateway_crds_are_absent(local_cluster: LocalCluster,
                                                                      kube: Kube) -> None:
    # A group no cluster serves stands for CRDs that are not installed: the API server answers 404.
    absent = {kind: ("absent.caldera.dev", "v1", f"{kind}.absent.caldera.dev") for kind in gateway_discovery.KINDS}
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.create((GROUP, VERSION), "modelservers", model_server("deepseek-r1-1-5b", "ds-1-5b", "deepseek-r1-1.5b"))
    kube.create((GROUP, VERSION), "modelroutes", model_route("plain", "plain", "deepseek-r1-1-5b"))
    async with gateway_router(local_cluster, kube.ns, crds=absent) as gr:
        assert gr.mode.absent_kinds == {"gateways", "httproutes", "inferencepools"}
        _s, body, _ = await wait_until(lambda: served(gr.port, "plain"), timeout=120)
        assert body["model"] == "deepseek-r1-1.5b"


# ---- status ------------------------------------------------------------------------------------


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj.get("conditions") or []}


async def test_gateway_http_route_and_pool_status_are_reported(local_cluster: LocalCluster, kube: Kube) -> None:
    gw_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-1-5b", "ds-1-5b"))
    kube.create(GW, "gateways", gateway("default", gw_port))
    kube.create(GW, "httproutes", http_route("llm-route", "default", "deepseek-r1-1-5b"))

    def status(gv: tuple[str, str], plural: str, name: str) -> dict[str, Any]:
        obj: Any = kube.custom.get_namespaced_custom_object(gv[0], gv[1], kube.ns, plural, name)
        return dict(obj.get("status") or {})

    def gateway_programmed() -> bool:
        s = status(GW, "gateways", "default")
        listeners = s.get("listeners") or [{}]
        return (_conditions(s) == {"Accepted": "True", "Programmed": "True"}
                and listeners[0].get("attachedRoutes") == 1)

    def route_accepted() -> bool:
        parents = status(GW, "httproutes", "llm-route").get("parents") or [{}]
        return _conditions(parents[0]) == {"Accepted": "True", "ResolvedRefs": "True"}

    def pool_accepted() -> bool:
        parents = status(INF, "inferencepools", "deepseek-r1-1-5b").get("parents") or [{}]
        return _conditions(parents[0]).get("Accepted") == "True"

    async with gateway_router(local_cluster, kube.ns):
        await wait_until(gateway_programmed, timeout=60)
        await wait_until(route_accepted, timeout=60)
        await wait_until(pool_accepted, timeout=60)


async def test_status_writer_writes_nothing_once_status_is_current(local_cluster: LocalCluster, kube: Kube) -> None:
    gw_port = free_port()
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-1-5b", "ds-1-5b"))
    kube.create(GW, "gateways", gateway("default", gw_port))
    kube.create(GW, "httproutes", http_route("llm-route", "default", "deepseek-r1-1-5b"))
    async with gateway_router(local_cluster, kube.ns) as gr:
        writer = gr.discovery.status_writer
        assert writer is not None

        async def idle_pass() -> bool:
            before = writer.writes
            await asyncio.to_thread(writer.write_all)
            return writer.writes == before

        await wait_until(idle_pass, timeout=60, interval=0.3)


# ---- HTTPS listeners, Service backends, filters -----------------------------------------------


def https_gateway(name: str, port: int, secret: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name},
            "spec": {"gatewayClassName": "kthena-router", "listeners": [{
                "name": "https", "port": port, "protocol": "HTTPS",
                "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": secret}]}}]}}


def secret_body(name: str, pair: tuple[bytes, bytes]) -> dict[str, Any]:
    body = tls_secret(name, pair)
    del body["metadata"]["namespace"], body["metadata"]["resourceVersion"]
    return body


async def served_certificate(port: int, trust: tuple[bytes, bytes]) -> bytes | None:
    """The certificate (DER) the port presents to a client trusting `trust`, or None."""
    ctx = ssl.create_default_context(cadata=trust[0].decode())
    try:
        _r, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="gw.example.com")
    except (OSError, ssl.SSLError):
        return None
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return bytes(der)


def listener_conditions(kube: Kube, gateway_name: str) -> dict[str, tuple[str, str]]:
    obj: Any = kube.custom.get_namespaced_custom_object(*GW, kube.ns, "gateways", gateway_name)
    listeners = (obj.get("status") or {}).get("listeners") or [{}]
    return {c["type"]: (c["status"], c["reason"]) for c in listeners[0].get("conditions") or []}


async def test_https_listener_serves_the_secrets_certificate_and_follows_its_changes(
        local_cluster: LocalCluster, kube: Kube) -> None:
    port = free_port()
    first, renewed = self_signed("gw.example.com"), self_signed("gw.example.com")
    kube.core.create_namespaced_secret(kube.ns, secret_body("gw-tls", first))  # type: ignore[arg-type]
    kube.create(GW, "gateways", https_gateway("secure", port, "gw-tls"))
    async with gateway_router(local_cluster, kube.ns, inference_extension=False, tls_secrets=True):
        await wait_until(lambda: served_certificate(port, first), timeout=60)
        await wait_until(lambda: listener_conditions(kube, "secure").get("Programmed") == ("True", "Programmed"),
                         timeout=60)
        kube.core.patch_namespaced_secret("gw-tls", kube.ns, {"data": secret_body("gw-tls", renewed)["data"]})
        await wait_until(lambda: served_certificate(port, renewed), timeout=60)


async def test_https_listener_without_its_secret_is_not_served_and_says_invalid_certificate_ref(
        local_cluster: LocalCluster, kube: Kube) -> None:
    port = free_port()
    kube.create(GW, "gateways", https_gateway("secure", port, "absent-tls"))
    async with gateway_router(local_cluster, kube.ns, inference_extension=False, tls_secrets=True) as gr:
        await wait_until(lambda: listener_conditions(kube, "secure").get("ResolvedRefs")
                         == ("False", "InvalidCertificateRef"), timeout=60)
        assert port not in gr.mode.listeners.open_ports()


def route_resolved_refs(kube: Kube, name: str) -> tuple[str, str] | None:
    obj: Any = kube.custom.get_namespaced_custom_object(*GW, kube.ns, "httproutes", name)
    parents = (obj.get("status") or {}).get("parents") or [{}]
    return next(((c["status"], c["reason"]) for c in parents[0].get("conditions") or []
                 if c["type"] == "ResolvedRefs"), None)


async def test_http_route_to_a_service_resolves_through_the_watched_service(local_cluster: LocalCluster,
                                                                            kube: Kube) -> None:
    """Service backendRefs against the real API server: the Service and its port resolve (a missing
    one is BackendNotFound). No endpoint is served here: the API server refuses EndpointSlice
    addresses in 127.0.0.0/8, the local cluster's pod network (traffic to Service endpoints is
    tested in tests/unit/router/test_gateway_services.py)."""
    gw_port = free_port()
    kube.core.create_namespaced_service(kube.ns, {  # type: ignore[arg-type]  # a dict body is accepted
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ds"},
        "spec": {"selector": {"app": "nothing"}, "ports": [{"name": "http", "port": 80, "targetPort": 8000}]}})
    kube.create(GW, "gateways", gateway("default", gw_port))
    for name, svc in (("to-service", "ds"), ("to-absent", "absent")):
        route = http_route(name, "default", "unused")
        route["spec"]["rules"][0]["backendRefs"] = [{"kind": "Service", "name": svc, "port": 80}]
        kube.create(GW, "httproutes", route)
    async with gateway_router(local_cluster, kube.ns) as gr:
        await wait_until(lambda: route_resolved_refs(kube, "to-service") == ("True", "ResolvedRefs"), timeout=60)
        await wait_until(lambda: route_resolved_refs(kube, "to-absent") == ("False", "BackendNotFound"), timeout=60)
        assert f"Service/{kube.ns}/ds:80" in gr.router.state.table.servers


async def test_http_route_filters_redirect_and_set_response_headers(local_cluster: LocalCluster, kube: Kube) -> None:
    gw_port = free_port()
    kube.pods("ds-1-5b", "deepseek-r1-1.5b", 1)
    kube.create(INF, "inferencepools", inference_pool("deepseek-r1-1-5b", "ds-1-5b"))
    kube.create(GW, "gateways", gateway("default", gw_port))
    route = http_route("filtered", "default", "deepseek-r1-1-5b")
    route["spec"]["rules"][0]["filters"] = [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "set": [{"name": "x-served-by", "value": "caldera"}]}}]
    route["spec"]["rules"].append({"matches": [{"headers": [{"name": "x-legacy", "value": "1"}]}], "filters": [
        {"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example.com", "statusCode": 301}}]})
    kube.create(GW, "httproutes", route)
    async with gateway_router(local_cluster, kube.ns):
        _s, _body, headers = await wait_until(lambda: served(gw_port, "deepseek-r1-1.5b"), timeout=120)
        assert headers["x-served-by"] == "caldera"
        async with aiohttp.ClientSession() as s, s.post(
                f"http://127.0.0.1:{gw_port}/v1/chat/completions", headers={"x-legacy": "1"}, allow_redirects=False,
                json={"model": "deepseek-r1-1.5b", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert (r.status, r.headers["location"]) == (301, f"http://new.example.com:{gw_port}/v1/chat/completions")
