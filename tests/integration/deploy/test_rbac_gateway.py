"""Least privilege with `router.gatewayAPI.inferenceExtension` and `.tls` (Gateway API mode,
Inference Extension, default Gateway, HTTPS listeners): the router runs with the chart's flags
and config, as the chart's ServiceAccount behind the recording proxy. It creates Kthena's
GatewayClass and default Gateway, serves an HTTPRoute -> InferencePool of an enginesim pod,
writes the status of all three and serves an HTTPS listener with its kubernetes.io/tls Secret;
every request is granted and every grant is used.

The Gateway API and InferencePool CRDs are the upstream ones (caldera.localcluster.gatewaycrds).
GatewayClass `kthena-router` is cluster-scoped and shared: when an earlier run left it, the
router's create answers 409, which the API server decides only after authorising the create.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from apirecorder import (
    ApiRecorder,
    Run,
    chart_release,
    cluster_ca,
    forbidden,
    free_port,
    run_component,
    ungranted,
    unused_grants,
    wait_until,
)
from kubernetes import client

from caldera.localcluster import gatewaycrds
from caldera.localcluster.session import LocalCluster
from router.gateway.harness import self_signed, tls_secret

pytestmark = pytest.mark.cluster

CONDITIONS = frozenset({"routerGatewayAPI", "routerGatewayAPIInferenceExtension", "routerDefaultGateway",
                        "routerGatewayTLS"})
GW = ("gateway.networking.k8s.io", "v1")
INF = ("inference.networking.k8s.io", "v1")
CONTROLLER = "caldera.dev/router"
MODEL = "pool-model"
# Flags the test sets itself: where to listen, how to reach the API server, the config file's path.
OWN_FLAGS = ("--in-cluster", "--host=", "--port=", "--config=")


def chart_router(rendered: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The chart's router arguments after `router` and its config file."""
    (deployment,) = [o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-router")]
    (config_map,) = [o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-router")]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    args = [a for a in args[args.index("router") + 1:] if not a.startswith(OWN_FLAGS)]
    return args, yaml.safe_load(config_map["data"]["config.yaml"])


def engine_pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "pool"}},
            "spec": {"schedulerName": "volcano", "containers": [{
                "name": "engine", "image": "caldera/enginesim:latest",
                "args": ["--model", MODEL, "--time-scale", "20"],
                "ports": [{"containerPort": 8000}], "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def inference_pool() -> dict[str, Any]:
    return {"apiVersion": "/".join(INF), "kind": "InferencePool", "metadata": {"name": "pool"},
            "spec": {"selector": {"matchLabels": {"app": "pool"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "pool-epp", "port": {"number": 9002}}}}


def http_route() -> dict[str, Any]:
    """Attached to the Gateway `default` the router itself creates."""
    return {"apiVersion": "/".join(GW), "kind": "HTTPRoute", "metadata": {"name": "to-pool"},
            "spec": {"parentRefs": [{"group": GW[0], "kind": "Gateway", "name": "default"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": [{"group": INF[0], "kind": "InferencePool", "name": "pool"}]}]}}


def https_gateway(port: int) -> dict[str, Any]:
    return {"apiVersion": "/".join(GW), "kind": "Gateway", "metadata": {"name": "secure"},
            "spec": {"gatewayClassName": "kthena-router", "listeners": [{
                "name": "https", "port": port, "protocol": "HTTPS",
                "tls": {"mode": "Terminate", "certificateRefs": [{"name": "gw-tls"}]}}]}}


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions") or []}


@pytest.fixture(scope="module")
def gateway_run(local_cluster: LocalCluster) -> Iterator[Run]:
    api = local_cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    gatewaycrds.install(api, progress=print)
    with (chart_release(local_cluster, "rbacg", lambda ns: {
              "controller": {"enabled": False},
              "router": {"watchNamespace": ns, "gatewayAPI": {"inferenceExtension": True, "tls": True}}}
                       ) as (release, rendered),
          tempfile.TemporaryDirectory(prefix="caldera-rbacg-") as tmp):
        ns = release.namespace
        args, config = chart_router(rendered)
        work = Path(tmp)
        core.create_namespaced_pod(ns, engine_pod("pool-0"))  # type: ignore[arg-type]  # a dict body is accepted
        custom.create_namespaced_custom_object(*INF, ns, "inferencepools", inference_pool())
        custom.create_namespaced_custom_object(*GW, ns, "httproutes", http_route())
        pair = self_signed("gw.example.com")
        secret = tls_secret("gw-tls", pair)
        del secret["metadata"]["namespace"], secret["metadata"]["resourceVersion"]
        core.create_namespaced_secret(ns, secret)  # type: ignore[arg-type]  # a dict body is accepted
        tls_port = free_port()
        custom.create_namespaced_custom_object(*GW, ns, "gateways", https_gateway(tls_port))
        config_file = work / "router.yaml"
        config_file.write_text(yaml.safe_dump(config))
        recorder = ApiRecorder(local_cluster.server, cluster_ca(local_cluster)).start()
        kubeconfig = release.kubeconfig("router", f"http://127.0.0.1:{recorder.port}", work)
        port = free_port()
        component = run_component(["router", *args, "--host=127.0.0.1", f"--port={port}", "--no-kv-events",
                                   f"--config={config_file}"], work / "router.log", kubeconfig)
        reached: dict[str, bool] = {}
        failure = ""

        def status(gv: tuple[str, str], plural: str, obj: str) -> dict[str, Any]:
            try:
                found: Any = custom.get_namespaced_custom_object(*gv, ns, plural, obj)
            except client.exceptions.ApiException:
                return {}
            return dict(found.get("status") or {})

        def ours(gv: tuple[str, str], plural: str, obj: str) -> dict[str, str]:
            entries = [p for p in status(gv, plural, obj).get("parents") or [] if p.get("controllerName") == CONTROLLER]
            return conditions(entries[0]) if entries else {}

        def proxied() -> bool:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10, json={
                    "model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and r.headers.get("x-caldera-server") == f"InferencePool/{ns}/pool"

        def tls_served() -> bool:
            trust = ssl.create_default_context(cadata=pair[0].decode())
            try:
                with (socket.create_connection(("127.0.0.1", tls_port), timeout=5) as sock,
                      trust.wrap_socket(sock, server_hostname="gw.example.com")):
                    return True
            except (OSError, ssl.SSLError):
                return False

        steps = [
            ("default Gateway created and programmed",
             lambda: conditions(status(GW, "gateways", "default")) == {"Accepted": "True", "Programmed": "True"}),
            ("HTTPRoute status", lambda: ours(GW, "httproutes", "to-pool") == {"Accepted": "True",
                                                                               "ResolvedRefs": "True"}),
            ("InferencePool status", lambda: ours(INF, "inferencepools", "pool").get("Accepted") == "True"),
            ("proxied", proxied),
            ("HTTPS listener served with its Secret", tls_served),
        ]
        try:
            for step, check in steps:
                wait_until(step, check, 120)
                reached[step] = True
        except AssertionError as exc:
            failure = str(exc)
        finally:
            component.stop()
            recorder.stop()
            api.close()
        run = Run(list(recorder.records), component.text(), reached, failure)
    yield run


def test_router_as_its_service_account_creates_the_default_gateway_writes_status_and_proxies(
        gateway_run: Run) -> None:
    assert list(gateway_run.reached) == ["default Gateway created and programmed", "HTTPRoute status",
                                         "InferencePool status", "proxied", "HTTPS listener served with its Secret"], (
        gateway_run.explain())


def test_router_in_gateway_mode_is_never_forbidden(gateway_run: Run) -> None:
    assert not forbidden(gateway_run)
    assert "forbidden" not in gateway_run.log.lower() and "may not list" not in gateway_run.log


def test_router_in_gateway_mode_uses_only_what_the_chart_grants(gateway_run: Run) -> None:
    ungranted_used = ungranted(gateway_run, "router", CONDITIONS)
    assert not ungranted_used, ungranted_used


def test_router_in_gateway_mode_uses_everything_the_chart_grants(gateway_run: Run) -> None:
    unused = unused_grants(gateway_run, "router", CONDITIONS)
    assert not unused, f"the chart grants what the router never used: {sorted(unused)}"


def test_router_creates_the_default_gateway_where_it_watches(gateway_run: Run) -> None:
    creates = {r.path for r in gateway_run.records if r.method == "POST" and r.path.endswith("/gateways")}
    assert len(creates) == 1 and "/namespaces/rbacg-" in next(iter(creates)), creates
