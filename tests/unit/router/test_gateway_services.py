"""Service backendRefs of HTTPRoutes: resolved to the ready addresses of the Service's
EndpointSlices (pure), then served end to end by a router in static Gateway mode in front of
real echo servers."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from router.gateway.harness import echo_server, static_gateway_router
from router.gateway.objects import BackendRef, compile_http_route
from router.gateway.services import MEMBER_LABEL, resolve_services
from router.harness import free_port
from router.routing import RouteConfigError


def service(name: str = "echo", ports: tuple[tuple[str, int], ...] = (("http", 80),), ns: str = "default"
            ) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]}}


def endpoint_slice(addresses: list[tuple[str, bool | None]], port: int, port_name: str = "http",
                   svc: str = "echo", ns: str = "default", name: str = "echo-abc") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], **({} if ready is None else {"conditions": {"ready": ready}}),
                           "targetRef": {"kind": "Pod", "name": f"pod-{i}"}}
                          for i, (ip, ready) in enumerate(addresses)]}


def ref(name: str = "echo", port: int = 80, ns: str = "default") -> tuple[str, BackendRef]:
    return ("default", BackendRef(kind="Service", namespace=ns, name=name, weight=1, port=port))


def test_a_service_port_resolves_to_its_ready_endpoint_addresses_on_the_target_port() -> None:
    got = resolve_services([ref()], [service()], [endpoint_slice([("10.0.0.1", True), ("10.0.0.2", None),
                                                                  ("10.0.0.3", False)], 8000)])
    assert sorted(p.address for p in got.pods if p.address) == ["10.0.0.1:8000", "10.0.0.2:8000"]
    assert list(got.servers) == ["Service/default/echo:80"] and not got.errors
    assert all(got.servers["Service/default/echo:80"].selects(p.namespace, p.labels) for p in got.pods)


def test_the_slice_port_is_the_one_named_as_the_service_port() -> None:
    slices = [endpoint_slice([("10.0.0.1", True)], 9000, port_name="metrics", name="a"),
              endpoint_slice([("10.0.0.1", True)], 8000, port_name="http", name="b")]
    got = resolve_services([ref()], [service(ports=(("http", 80), ("metrics", 9090)))], slices)
    assert [p.address for p in got.pods] == ["10.0.0.1:8000"]


@pytest.mark.parametrize(("given", "backend", "reason", "says"), [
    ([], ref(), "BackendNotFound", "Service default/echo not found"),
    ([service()], ref(port=81), "BackendNotFound", "has no port 81"),
    ([service(ns="other")], ref(ns="other"), "RefNotPermitted", "another namespace"),
])
def test_an_unusable_service_ref_says_why(given: list[dict[str, Any]], backend: tuple[str, BackendRef], reason: str,
                                          says: str) -> None:
    (why,) = resolve_services([backend], given, []).errors.values()
    assert why[0] == reason and says in why[1]


def test_a_service_backend_ref_without_port_is_refused_naming_the_field() -> None:
    with pytest.raises(RouteConfigError, match=r"backendRefs\[0\].port is required for a Service"):
        compile_http_route({"metadata": {"name": "r", "namespace": "default"},
                            "spec": {"rules": [{"backendRefs": [{"kind": "Service", "name": "echo"}]}]}})


def test_endpoint_records_are_labelled_for_their_service_only() -> None:
    got = resolve_services([ref(), ref(port=8080)], [service(ports=(("http", 80), ("alt", 8080)))],
                           [endpoint_slice([("10.0.0.1", True)], 8000)])
    assert {p.labels[MEMBER_LABEL] for p in got.pods} == {"default.echo.80"}
    assert set(got.servers) == {"Service/default/echo:80", "Service/default/echo:8080"}


# ---- end to end -------------------------------------------------------------------------------


@asynccontextmanager
async def service_router(backends: int, extra_rule: dict[str, Any] | None = None) -> AsyncIterator[int]:
    """A Gateway listener (the returned port) with an HTTPRoute to Service `echo` port 80, whose
    EndpointSlice lists `backends` real echo servers."""
    gw_port = free_port()
    async with AsyncExitStack() as stack:
        addresses = [await stack.enter_async_context(echo_server(f"echo-{i}")) for i in range(backends)]
        slices = [endpoint_slice([(a.split(":")[0], True)], int(a.split(":")[1]), name=f"echo-{i}")
                  for i, a in enumerate(addresses)]
        rules = [{"backendRefs": [{"kind": "Service", "name": "echo", "port": 80}]}]
        await stack.enter_async_context(static_gateway_router({"gateway": {
            "enableGatewayAPIInferenceExtension": True,
            "gateways": [{"metadata": {"name": "edge", "namespace": "default"},
                          "spec": {"gatewayClassName": "kthena-router",
                                   "listeners": [{"name": "http", "port": gw_port, "protocol": "HTTP"}]}}],
            "httpRoutes": [{"metadata": {"name": "llm", "namespace": "default"},
                            "spec": {"parentRefs": [{"name": "edge"}], "rules": rules + ([extra_rule] if extra_rule
                                                                                          else [])}}],
            "services": [service()], "endpointSlices": slices}}))
        yield gw_port


async def complete(port: int, prompt: str, headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/v1/completions", headers=headers,
                                                     json={"model": "echo", "prompt": prompt, "max_tokens": 1}) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


async def test_http_route_to_a_service_is_served_by_its_endpoints() -> None:
    async with service_router(1) as port:
        status, body, headers = await complete(port, "hello")
    assert (status, body["server"], headers["x-caldera-server"]) == (200, "echo-0", "Service/default/echo:80")


async def test_requests_to_a_service_spread_over_its_ready_endpoints() -> None:
    async with service_router(2) as port:
        served = {(await complete(port, f"prompt {i}"))[1]["server"] for i in range(24)}
    assert served == {"echo-0", "echo-1"}


async def test_a_rule_to_a_missing_service_answers_500_naming_it() -> None:
    missing = {"matches": [{"headers": [{"name": "x-backend", "value": "absent"}]}],
               "backendRefs": [{"kind": "Service", "name": "absent", "port": 80}]}
    async with service_router(1, missing) as port:
        status, body, _ = await complete(port, "x", {"x-backend": "absent"})
    assert status == 500 and "Service default/absent not found" in body["error"]["message"]


async def test_one_rule_splits_by_weight_between_an_inference_pool_and_a_service() -> None:
    gw_port = free_port()
    async with echo_server("pool-0") as pool_address, echo_server("svc-0") as svc_address, static_gateway_router({
            "endpoints": [{"name": "pool-0", "address": pool_address, "labels": {"app": "pool"}}],
            "gateway": {
                "enableGatewayAPIInferenceExtension": True,
                "gateways": [{"metadata": {"name": "edge", "namespace": "default"},
                              "spec": {"gatewayClassName": "kthena-router",
                                       "listeners": [{"name": "http", "port": gw_port, "protocol": "HTTP"}]}}],
                "httpRoutes": [{"metadata": {"name": "llm", "namespace": "default"},
                                "spec": {"parentRefs": [{"name": "edge"}], "rules": [{"backendRefs": [
                                    {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool",
                                     "weight": 1},
                                    {"kind": "Service", "name": "echo", "port": 80, "weight": 1}]}]}}],
                "inferencePools": [{"metadata": {"name": "pool", "namespace": "default"},
                                    "spec": {"selector": {"matchLabels": {"app": "pool"}},
                                             "targetPorts": [{"number": 8000}]}}],
                "services": [service()],
                "endpointSlices": [endpoint_slice([("127.0.0.1", True)], int(svc_address.split(":")[1]))]}}):
        served = {(await complete(gw_port, f"prompt {i}"))[1]["server"] for i in range(32)}
    assert served == {"pool-0", "svc-0"}
