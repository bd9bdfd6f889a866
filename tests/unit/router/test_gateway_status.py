"""Status the router reports on Gateways, HTTPRoutes and InferencePools (pure functions)."""

from typing import Any

from router.gateway.status import (
    CONTROLLER_NAME,
    desired_gateway,
    desired_http_route_parents,
    desired_pool_parents,
    merge_parents,
    parents_unchanged,
)
from router.gateway.table import GatewayTable

NOW = "2026-11-21T12:00:00Z"


def gateway(port: int = 8081, protocol: str = "HTTP") -> dict[str, Any]:
    return {"metadata": {"name": "gw", "namespace": "ns", "generation": 2},
            "spec": {"gatewayClassName": "kthena-router",
                     "listeners": [{"name": "http", "port": port, "protocol": protocol}]}}


def route(backend: dict[str, Any] | None = None, parent: str = "gw") -> dict[str, Any]:
    return {"metadata": {"name": "r", "namespace": "ns", "generation": 1},
            "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": parent}],
                     "rules": [{"backendRefs": [backend or {"group": "inference.networking.k8s.io",
                                                            "kind": "InferencePool", "name": "p"}]}]}}


def pool() -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "p"}}, "targetPorts": [{"number": 8000}]}}


def conds(items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in items}


def table(gateways: list[dict[str, Any]], routes: list[dict[str, Any]], pools: list[dict[str, Any]]) -> GatewayTable:
    return GatewayTable.build(gateways, routes, pools, inference_extension=True)


def test_gateway_is_programmed_when_its_listener_is_serving() -> None:
    t = table([gateway()], [route()], [pool()])
    status = desired_gateway(gateway(), t, {}, {8081})
    assert status is not None
    assert conds(status["conditions"]) == {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
    assert status["listeners"][0]["attachedRoutes"] == 1
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])


def test_listener_that_cannot_bind_makes_the_gateway_not_programmed() -> None:
    t = table([gateway()], [], [])
    status = desired_gateway(gateway(), t, {8081: "address already in use"}, set())
    assert status is not None
    assert conds(status["conditions"])["Programmed"] == ("False", "Invalid")
    assert conds(status["listeners"][0]["conditions"])["Accepted"] == ("False", "PortUnavailable")


def test_unsupported_listener_protocol_is_reported_on_the_listener() -> None:
    gw = gateway(protocol="TCP")
    status = desired_gateway(gw, table([gw], [], []), {}, set())
    assert status is not None
    assert conds(status["listeners"][0]["conditions"])["Accepted"] == ("False", "UnsupportedProtocol")


def test_gateway_of_another_class_gets_no_status_from_us() -> None:
    gw = gateway()
    gw["spec"]["gatewayClassName"] = "istio"
    assert desired_gateway(gw, table([gw], [], []), {}, set()) is None


def test_http_route_is_accepted_and_resolved() -> None:
    parents = desired_http_route_parents(route(), table([gateway()], [route()], [pool()]))
    assert parents is not None and parents[0]["controllerName"] == CONTROLLER_NAME
    assert conds(parents[0]["conditions"]) == {"Accepted": ("True", "Accepted"),
                                               "ResolvedRefs": ("True", "ResolvedRefs")}


def test_http_route_to_a_missing_pool_is_not_resolved() -> None:
    parents = desired_http_route_parents(route(), table([gateway()], [route()], []))
    assert parents is not None
    assert conds(parents[0]["conditions"])["ResolvedRefs"] == ("False", "BackendNotFound")


def test_http_route_to_a_config_map_has_an_invalid_kind() -> None:
    r = route({"kind": "ConfigMap", "name": "cm"})
    parents = desired_http_route_parents(r, table([gateway()], [r], []))
    assert parents is not None
    assert conds(parents[0]["conditions"])["ResolvedRefs"] == ("False", "InvalidKind")


def test_http_route_to_a_missing_service_is_backend_not_found() -> None:
    r = route({"name": "svc", "port": 80})
    parents = desired_http_route_parents(r, table([gateway()], [r], []))
    assert parents is not None
    assert conds(parents[0]["conditions"])["ResolvedRefs"] == ("False", "BackendNotFound")


def test_http_route_to_a_gateway_we_do_not_serve_gets_no_status() -> None:
    r = route(parent="elsewhere")
    assert desired_http_route_parents(r, table([gateway()], [r], [pool()])) is None


def test_pool_lists_the_gateways_routing_to_it() -> None:
    parents = desired_pool_parents(pool(), table([gateway()], [route()], [pool()]))
    assert parents is not None
    assert parents[0]["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "ns",
                                       "name": "gw"}


def test_other_controllers_entries_are_kept_and_unchanged_conditions_keep_their_time() -> None:
    t = table([gateway()], [route()], [pool()])
    ours = desired_http_route_parents(route(), t)
    other = {"parentRef": {"name": "x"}, "controllerName": "istio.io/gateway-controller", "conditions": []}
    first = merge_parents(ours, [other], NOW)
    assert first[0] == other and first[1]["conditions"][0]["lastTransitionTime"] == NOW
    again = merge_parents(desired_http_route_parents(route(), t), first, "2026-11-21T13:00:00Z")
    assert parents_unchanged(again, first)
    assert again[1]["conditions"][0]["lastTransitionTime"] == NOW


def test_http_route_refused_by_allowed_routes_says_so() -> None:
    gw = gateway()
    gw["spec"]["listeners"][0]["allowedRoutes"] = {"namespaces": {"from": "Same"}}
    r = route()
    r["metadata"]["namespace"] = "apps"
    r["spec"]["parentRefs"][0]["namespace"] = "ns"
    t = GatewayTable.build([gw], [r], [pool()], inference_extension=True, enforce_allowed_routes=True)
    parents = desired_http_route_parents(r, t)
    assert parents is not None
    assert conds(parents[0]["conditions"])["Accepted"] == ("False", "NotAllowedByListeners")
