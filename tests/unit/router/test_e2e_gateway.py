"""Gateway mode in static configuration, in front of real enginesim processes: one HTTP server
per Gateway listener port, HTTPRoute -> InferencePool, EPP headers, the config dump."""

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from router.gateway.harness import static_gateway_router
from router.gateway.mode import GatewayMode
from router.harness import Engines, free_port, route, server, wait_until
from router.server import Router

pytestmark = pytest.mark.slow


def gateway_router(cfg: dict[str, Any]) -> AbstractAsyncContextManager[tuple[Router, GatewayMode]]:
    return static_gateway_router(cfg, config_dump=True)


def pool_ref(name: str) -> dict[str, Any]:
    return {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": name}


@pytest.fixture
async def pool_setup(engines: Engines) -> AsyncIterator[tuple[Router, int, list[str]]]:
    e0 = await engines.start("pool-0", "--served-model-name", "pool-model", labels={"app": "pool"})
    e1 = await engines.start("pool-1", "--served-model-name", "pool-model", labels={"app": "pool"})
    small = await engines.start("small-0", "--served-model-name", "small-1b", labels={"app": "small"})
    gw_port = free_port()
    cfg = {
        "modelServers": [server("small", model="small-1b")],
        "modelRoutes": [route("chat", "chat", [{"targetModels": [{"modelServerName": "small"}]}])],
        "endpoints": [e0.endpoint(), e1.endpoint(), small.endpoint()],
        "gateway": {
            "enableGatewayAPIInferenceExtension": True,
            "gateways": [{"metadata": {"name": "edge", "namespace": "default"},
                          "spec": {"gatewayClassName": "kthena-router",
                                   "listeners": [{"name": "http", "port": gw_port, "protocol": "HTTP"}]}}],
            "httpRoutes": [{"metadata": {"name": "llm", "namespace": "default"},
                            "spec": {"parentRefs": [{"name": "edge"}],
                                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                                                "backendRefs": [pool_ref("pool")]}]}}],
            "inferencePools": [{"metadata": {"name": "pool", "namespace": "default"},
                                "spec": {"selector": {"matchLabels": {"app": "pool"}},
                                         "targetPorts": [{"number": 8000}]}}],
        },
    }
    async with gateway_router(cfg) as (router, _mode):
        yield router, gw_port, [e0.address, e1.address]


async def post(port: int, body: dict[str, Any], headers: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/v1/completions", json=body,
                                                     headers=headers or {}) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


async def get(port: int, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        assert r.status == 200
        return await r.json()


async def test_gateway_listener_port_serves_the_http_route_to_the_pool(pool_setup: Any) -> None:
    _router, gw_port, _ = pool_setup
    status, body, headers = await post(gw_port, {"model": "pool-model", "prompt": "hello", "max_tokens": 2})
    assert status == 200 and body["model"] == "pool-model"
    assert headers["x-caldera-server"] == "InferencePool/default/pool"


async def test_main_port_does_not_serve_http_routes(pool_setup: Any) -> None:
    router, _gw_port, _ = pool_setup
    status, body, _ = await post(router.config.port, {"model": "pool-model", "prompt": "hello", "max_tokens": 2})
    assert status == 404 and body["error"]["code"] == "model_not_found"


async def test_main_port_still_serves_model_routes(pool_setup: Any) -> None:
    router, _gw_port, _ = pool_setup
    status, body, _ = await post(router.config.port, {"model": "chat", "prompt": "hello", "max_tokens": 2})
    assert status == 200 and body["model"] == "small-1b"


async def test_destination_endpoint_header_pins_the_pool_endpoint(pool_setup: Any) -> None:
    _router, gw_port, addresses = pool_setup
    pods = set()
    for i in range(8):
        status, _, headers = await post(gw_port, {"model": "pool-model", "prompt": f"p{i}", "max_tokens": 1},
                                        {"x-gateway-destination-endpoint": addresses[1]})
        assert status == 200
        pods.add(headers["x-caldera-pod"])
    assert pods == {"default/pool-1"}


async def test_destination_endpoint_outside_the_pool_is_a_503(pool_setup: Any) -> None:
    _router, gw_port, _ = pool_setup
    status, body, _ = await post(gw_port, {"model": "pool-model", "prompt": "x", "max_tokens": 1},
                                 {"x-gateway-destination-endpoint-subset": "127.0.0.1:1"})
    assert status == 503 and "no ready endpoints" in body["error"]["message"]


async def test_config_dump_shows_gateway_listeners_and_pool_endpoints(pool_setup: Any) -> None:
    router, gw_port, addresses = pool_setup
    port = router.config.port
    gateways = (await get(port, "/debug/config_dump/gateways"))["gateways"]
    assert gateways[0]["listeners"] == [{"name": "http", "port": gw_port, "hostname": None, "open": True,
                                         "error": None}]
    pools = (await get(port, "/debug/config_dump/inferencepools"))["inferencepools"]
    assert sorted(e["address"] for e in pools[0]["endpoints"]) == sorted(addresses)
    routes = (await get(port, "/debug/config_dump/httproutes"))["httproutes"]
    assert routes[0]["attachedListeners"] == ["default/edge/http"]


async def test_config_dump_lists_pods_with_their_servers_and_pools(pool_setup: Any) -> None:
    router, _gw_port, _ = pool_setup
    pods = {p["name"]: p for p in (await get(router.config.port, "/debug/config_dump/pods"))["pods"]}
    assert pods["pool-0"]["inferencePools"] == ["default/pool"] and pods["small-0"]["modelServers"] == ["default/small"]
    one = await get(router.config.port, "/debug/config_dump/namespaces/default/modelservers/small")
    assert one["associatedPods"] == ["default/small-0"]


async def test_listener_ports_follow_gateway_changes(engines: Engines) -> None:
    first, second = free_port(), free_port()

    def gateways(port: int) -> list[dict[str, Any]]:
        return [{"metadata": {"name": "edge", "namespace": "default"},
                 "spec": {"gatewayClassName": "kthena-router",
                          "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}]

    async with gateway_router({"gateway": {"enableGatewayAPI": True, "gateways": gateways(first)}}) as (_r, mode):
        assert mode.listeners.open_ports() == {first}
        mode.update([], gateways(second), [], [])
        await wait_for(lambda: mode.listeners.open_ports() == {second})
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientConnectionError):
                await s.get(f"http://127.0.0.1:{first}/healthz")


async def wait_for(predicate: Callable[[], bool]) -> None:
    await wait_until(predicate, timeout=10)


async def test_listener_port_in_use_is_reported_and_the_rest_keeps_serving(engines: Engines) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy, free = taken.getsockname()[1], free_port()
        gws = [{"metadata": {"name": "edge", "namespace": "default"},
                "spec": {"gatewayClassName": "kthena-router",
                         "listeners": [{"name": "busy", "port": busy, "protocol": "HTTP"},
                                       {"name": "free", "port": free, "protocol": "HTTP"}]}}]
        async with gateway_router({"gateway": {"enableGatewayAPI": True, "gateways": gws}}) as (router, mode):
            assert mode.listeners.open_ports() == {free}
            dumped = (await get(router.config.port, "/debug/config_dump/gateways"))["gateways"][0]["listeners"]
            assert [(x["name"], x["open"], bool(x["error"])) for x in dumped] == [("busy", False, True),
                                                                                 ("free", True, False)]


async def test_models_list_what_each_port_serves(pool_setup: Any) -> None:
    router, gw_port, _ = pool_setup
    main = [m["id"] for m in (await get(router.config.port, "/v1/models"))["data"]]
    on_gateway = [m["id"] for m in (await get(gw_port, "/v1/models"))["data"]]
    assert (main, on_gateway) == (["chat"], [])


async def test_host_header_picks_the_listener_among_gateways_sharing_a_port(engines: Engines) -> None:
    a = await engines.start("a-0", "--served-model-name", "m", labels={"app": "a"})
    b = await engines.start("b-0", "--served-model-name", "m", labels={"app": "b"})
    port = free_port()

    def gw(name: str, host: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "default"},
                "spec": {"gatewayClassName": "kthena-router",
                         "listeners": [{"name": "http", "port": port, "protocol": "HTTP", "hostname": host}]}}

    def http_route(name: str, gateway: str, pool: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "default"},
                "spec": {"parentRefs": [{"name": gateway}], "rules": [{"backendRefs": [pool_ref(pool)]}]}}

    def pool(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": name}}, "targetPorts": [{"number": 8000}]}}

    cfg = {"endpoints": [a.endpoint(), b.endpoint()], "gateway": {
        "enableGatewayAPIInferenceExtension": True,
        "gateways": [gw("alpha", "alpha.example.com"), gw("beta", "*.beta.example.com")],
        "httpRoutes": [http_route("to-a", "alpha", "a"), http_route("to-b", "beta", "b")],
        "inferencePools": [pool("a"), pool("b")]}}
    async with gateway_router(cfg):
        body = {"model": "m", "prompt": "hi", "max_tokens": 1}
        _s, _b, alpha = await post(port, body, {"host": "alpha.example.com"})
        _s, _b, beta = await post(port, body, {"host": "api.beta.example.com:8443"})
        status, _b, _h = await post(port, body, {"host": "gamma.example.com"})
        assert (alpha["x-caldera-pod"], beta["x-caldera-pod"], status) == ("default/a-0", "default/b-0", 404)
