"""Gateway API mode, pure core: listeners, ModelRoute parentRefs, HTTPRoute precedence,
InferencePool backends and endpoints, EPP headers."""

import random
from typing import Any

import pytest
from multidict import CIMultiDict

from router.gateway.matching import GatewayDecision, GatewayRouter, RequestFacts, endpoint_subset
from router.gateway.objects import compile_gateway, compile_http_route, compile_pool
from router.gateway.table import GatewayTable
from router.request import RequestError
from router.routing import RouteConfigError, RouteTable, compile_route, compile_server
from router.state import PodInfo, RouterState

MAIN = 8080


def gateway(name: str, *listeners: tuple[str, int] | tuple[str, int, str], ns: str = "gw",
            cls: str = "kthena-router") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": cls, "listeners": [
                {"name": item[0], "port": item[1], "protocol": "HTTP",
                 **({"hostname": item[2]} if len(item) > 2 else {})} for item in listeners]}}


def http_route(name: str, rules: list[dict[str, Any]], parents: list[dict[str, Any]] | None = None,
               ns: str = "apps", created: str = "2026-01-01T00:00:00Z",
               hostnames: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": parents or [{"name": "gw", "namespace": "gw"}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec}


def pool_ref(name: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": name}
    if weight is not None:
        ref["weight"] = weight
    return ref


def pool(name: str, ports: tuple[int, ...] = (8000,), ns: str = "apps") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "targetPorts": [{"number": p} for p in ports],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}


def model_route(name: str, model: str, server: str, parents: list[dict[str, Any]] | None = None,
                ns: str = "apps", created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    spec: dict[str, Any] = {"modelName": model, "rules": [{"targetModels": [{"modelServerName": server}]}]}
    if parents:
        spec["parentRefs"] = parents
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec}


def model_server(name: str, model: str, ns: str = "apps") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"model": model, "inferenceEngine": "vLLM", "workloadPort": {"port": 8000},
                     "workloadSelector": {"matchLabels": {"app": name}}}}


def build(gateways: list[dict[str, Any]], routes: list[dict[str, Any]] = (),  # type: ignore[assignment]
          http_routes: list[dict[str, Any]] = (), pools: list[dict[str, Any]] = (),  # type: ignore[assignment]
          servers: list[dict[str, Any]] = ()) -> tuple[RouteTable, GatewayRouter]:  # type: ignore[assignment]
    gw = GatewayTable.build(gateways, http_routes, pools, routes, inference_extension=True)
    plain = [compile_route(r) for r in routes]
    base = RouteTable.build(plain, [compile_server(s) for s in servers] + list(gw.pools.values()))
    attached = [r for r in plain if r.has_parent_refs]
    return base, GatewayRouter(gw, attached, MAIN)


def facts(port: int | None, path: str = "/v1/completions", host: str = "router.local", method: str = "POST",
          headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> RequestFacts:
    return RequestFacts.of(port, host, path, method, CIMultiDict(headers or {}), query or {})


# ---- objects ---------------------------------------------------------------------------------


def test_gateway_listener_port_out_of_range_names_the_field() -> None:
    with pytest.raises(RouteConfigError, match=r"spec.listeners\[0\].port"):
        compile_gateway(gateway("gw", ("http", 70000)))


def test_non_http_listeners_are_skipped_with_a_reason() -> None:
    obj = gateway("gw", ("http", 8081))
    obj["spec"]["listeners"].append({"name": "tls", "port": 8443, "protocol": "TLS"})
    gw = compile_gateway(obj)
    assert [listener.name for listener in gw.listeners] == ["http"]
    assert "only HTTP" in gw.unsupported[0]


def test_inference_pool_without_target_ports_is_rejected() -> None:
    obj = pool("p")
    obj["spec"]["targetPorts"] = []
    with pytest.raises(RouteConfigError, match="targetPorts"):
        compile_pool(obj)


def test_http_route_regex_error_names_the_match() -> None:
    obj = http_route("r", [{"matches": [{"path": {"type": "RegularExpression", "value": "(("}}],
                            "backendRefs": [pool_ref("p")]}])
    with pytest.raises(RouteConfigError, match=r"rules\[0\].matches\[0\].path.value"):
        compile_http_route(obj)


def test_gateways_of_other_classes_are_not_served() -> None:
    gw = GatewayTable.build([gateway("mine", ("http", 8081)), gateway("other", ("http", 8082), cls="istio")])
    assert list(gw.gateways) == ["gw/mine"] and gw.ports() == {8081}
    assert gw.ignored_gateways == ["gw/other"]


# ---- listeners --------------------------------------------------------------------------------


def test_listener_with_exact_hostname_wins_over_wildcard_and_catch_all() -> None:
    gw = GatewayTable.build([gateway("a", ("any", 8081)), gateway("b", ("wild", 8081, "*.example.com")),
                             gateway("c", ("exact", 8081, "api.example.com"))])
    assert gw.listener_for(8081, "api.example.com").gateway == "gw/c"  # type: ignore[union-attr]
    assert gw.listener_for(8081, "web.example.com").gateway == "gw/b"  # type: ignore[union-attr]
    assert gw.listener_for(8081, "other.org").gateway == "gw/a"  # type: ignore[union-attr]


def test_no_listener_claims_a_host_outside_its_hostname() -> None:
    gw = GatewayTable.build([gateway("b", ("wild", 8081, "*.example.com"))])
    assert gw.listener_for(8081, "example.com") is None


# ---- ModelRoutes and parentRefs ----------------------------------------------------------------


def test_same_model_name_routes_by_the_gateway_the_request_arrived_on() -> None:
    base, gr = build(
        [gateway("default", ("http", MAIN)), gateway("custom", ("http", 8081))],
        routes=[model_route("r1", "chat", "small", [{"name": "default", "namespace": "gw"}]),
                model_route("r2", "chat", "big", [{"name": "custom", "namespace": "gw", "kind": "Gateway"}])],
        servers=[model_server("small", "ds-1.5b"), model_server("big", "ds-7b")])
    assert gr.decide(base, facts(MAIN), "chat").upstream_model == "ds-1.5b"
    assert gr.decide(base, facts(8081), "chat").upstream_model == "ds-7b"


def test_route_with_parent_refs_is_not_served_on_another_listener() -> None:
    base, gr = build([gateway("custom", ("http", 8081)), gateway("other", ("http", 8082))],
                     routes=[model_route("r", "chat", "s", [{"name": "custom", "namespace": "gw"}])],
                     servers=[model_server("s", "m")])
    with pytest.raises(RequestError) as err:
        gr.decide(base, facts(8082), "chat")
    assert err.value.status == 404


def test_route_without_parent_refs_serves_on_the_main_port_only() -> None:
    base, gr = build([gateway("custom", ("http", 8081))], routes=[model_route("r", "chat", "s")],
                     servers=[model_server("s", "m")])
    assert gr.decide(base, facts(MAIN), "chat").server.name == "s"
    with pytest.raises(RequestError):
        gr.decide(base, facts(8081), "chat")


def test_section_name_limits_a_route_to_one_listener() -> None:
    base, gr = build([gateway("gw", ("a", 8081), ("b", 8082))],
                     routes=[model_route("r", "chat", "s", [{"name": "gw", "namespace": "gw", "sectionName": "b"}])],
                     servers=[model_server("s", "m")])
    assert gr.decide(base, facts(8082), "chat").server.name == "s"
    with pytest.raises(RequestError):
        gr.decide(base, facts(8081), "chat")


def test_model_route_decision_names_the_gateway() -> None:
    base, gr = build([gateway("custom", ("http", 8081))],
                     routes=[model_route("r", "chat", "s", [{"name": "custom", "namespace": "gw"}])],
                     servers=[model_server("s", "m")])
    d = gr.decide(base, facts(8081), "chat")
    assert isinstance(d, GatewayDecision) and (d.gateway, d.listener) == ("gw/custom", "http")


def test_a_port_nobody_listens_on_host_is_a_404() -> None:
    base, gr = build([gateway("custom", ("http", 8081, "api.example.com"))])
    with pytest.raises(RequestError) as err:
        gr.decide(base, facts(8081, host="other.org"), "chat")
    assert err.value.code == "listener_not_found"


# ---- HTTPRoutes and InferencePools -------------------------------------------------------------


def test_http_route_sends_unknown_models_to_its_inference_pool() -> None:
    base, gr = build([gateway("gw", ("http", 8081))],
                     http_routes=[http_route("llm", [{"backendRefs": [pool_ref("p")]}])], pools=[pool("p")])
    d = gr.decide(base, facts(8081), "any-model")
    assert d.server.key == "InferencePool/apps/p" and d.route.key == "HTTPRoute/apps/llm"
    assert d.upstream_model == "any-model"


def test_model_route_wins_over_http_route_on_the_same_listener() -> None:
    base, gr = build([gateway("gw", ("http", 8081))],
                     routes=[model_route("r", "chat", "s", [{"name": "gw", "namespace": "gw"}])],
                     http_routes=[http_route("llm", [{"backendRefs": [pool_ref("p")]}])],
                     pools=[pool("p")], servers=[model_server("s", "m")])
    assert gr.decide(base, facts(8081), "chat").server.key == "apps/s"
    assert gr.decide(base, facts(8081), "other").server.key == "InferencePool/apps/p"


def test_http_routes_do_not_apply_on_the_main_port_without_a_gateway_there() -> None:
    base, gr = build([gateway("gw", ("http", 8081))],
                     http_routes=[http_route("llm", [{"backendRefs": [pool_ref("p")]}])], pools=[pool("p")])
    with pytest.raises(RequestError):
        gr.decide(base, facts(MAIN), "m")


def test_exact_path_wins_over_a_longer_prefix_and_prefix_length_decides_between_prefixes() -> None:
    rules = [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [pool_ref("root")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v1/chat"}}], "backendRefs": [pool_ref("chat")]},
        {"matches": [{"path": {"type": "Exact", "value": "/v1/completions"}}], "backendRefs": [pool_ref("exact")]},
    ]
    base, gr = build([gateway("gw", ("http", 8081))], http_routes=[http_route("r", rules)],
                     pools=[pool("root"), pool("chat"), pool("exact")])
    assert gr.decide(base, facts(8081, "/v1/completions"), "m").server.name == "exact"
    assert gr.decide(base, facts(8081, "/v1/chat/completions"), "m").server.name == "chat"


def test_path_prefix_matches_whole_segments_only() -> None:
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1/chat/"}}], "backendRefs": [pool_ref("p")]}]
    base, gr = build([gateway("gw", ("http", 8081))], http_routes=[http_route("r", rules)], pools=[pool("p")])
    assert gr.decide(base, facts(8081, "/v1/chat/completions"), "m").server.name == "p"
    with pytest.raises(RequestError):
        gr.decide(base, facts(8081, "/v1/chatty"), "m")


def test_header_match_routes_and_more_header_matches_win() -> None:
    rules = [
        {"matches": [{"headers": [{"name": "X-Tier", "value": "gold"}]}], "backendRefs": [pool_ref("gold")]},
        {"matches": [{"headers": [{"name": "x-tier", "value": "gold"},
                                  {"name": "x-region", "type": "RegularExpression", "value": "eu-.*"}]}],
         "backendRefs": [pool_ref("gold-eu")]},
        {"backendRefs": [pool_ref("rest")]},
    ]
    base, gr = build([gateway("gw", ("http", 8081))], http_routes=[http_route("r", rules)],
                     pools=[pool("gold"), pool("gold-eu"), pool("rest")])
    assert gr.decide(base, facts(8081, headers={"x-tier": "gold"}), "m").server.name == "gold"
    assert gr.decide(base, facts(8081, headers={"X-Tier": "gold", "x-region": "eu-west"}), "m").server.name \
        == "gold-eu"
    assert gr.decide(base, facts(8081), "m").server.name == "rest"


def test_method_and_query_params_are_matched() -> None:
    rules = [{"matches": [{"method": "POST", "queryParams": [{"name": "tier", "value": "fast"}]}],
              "backendRefs": [pool_ref("fast")]}]
    base, gr = build([gateway("gw", ("http", 8081))], http_routes=[http_route("r", rules)], pools=[pool("fast")])
    assert gr.decide(base, facts(8081, query={"tier": "fast"}), "m").server.name == "fast"
    with pytest.raises(RequestError):
        gr.decide(base, facts(8081, query={"tier": "slow"}), "m")


def test_older_http_route_wins_a_tie() -> None:
    base, gr = build([gateway("gw", ("http", 8081))], http_routes=[
        http_route("newer", [{"backendRefs": [pool_ref("b")]}], created="2026-02-01T00:00:00Z"),
        http_route("older", [{"backendRefs": [pool_ref("a")]}], created="2026-01-01T00:00:00Z")],
        pools=[pool("a"), pool("b")])
    assert gr.decide(base, facts(8081), "m").server.name == "a"


def test_exact_route_hostname_wins_over_a_catch_all_route() -> None:
    base, gr = build([gateway("gw", ("http", 8081))], http_routes=[
        http_route("all", [{"backendRefs": [pool_ref("a")]}], created="2026-01-01T00:00:00Z"),
        http_route("api", [{"backendRefs": [pool_ref("b")]}], hostnames=["api.example.com"],
                   created="2026-02-01T00:00:00Z")],
        pools=[pool("a"), pool("b")])
    assert gr.decide(base, facts(8081, host="api.example.com:8081"), "m").server.name == "b"
    assert gr.decide(base, facts(8081, host="web.example.com"), "m").server.name == "a"


def test_http_route_attached_to_a_missing_gateway_serves_nothing_until_it_exists() -> None:
    routes = [http_route("late", [{"backendRefs": [pool_ref("p")]}], parents=[{"name": "late", "namespace": "gw"}])]
    before = GatewayTable.build([], routes, [pool("p")], inference_extension=True)
    assert before.ports() == set() and before.attached_routes == {}
    base, gr = build([gateway("late", ("http", 8082))], http_routes=routes, pools=[pool("p")])
    assert gr.decide(base, facts(8082), "m").server.name == "p"


def test_backend_weights_split_traffic() -> None:
    base, gr = build([gateway("gw", ("http", 8081))],
                     http_routes=[http_route("r", [{"backendRefs": [pool_ref("a", 3), pool_ref("b", 1)]}])],
                     pools=[pool("a"), pool("b")])
    rng = random.Random(7)
    picks = [gr.decide(base, facts(8081), "m", rng=rng).server.name for _ in range(4000)]
    assert abs(picks.count("a") / 4000 - 0.75) < 0.03


def test_zero_weight_backend_gets_no_traffic() -> None:
    base, gr = build([gateway("gw", ("http", 8081))],
                     http_routes=[http_route("r", [{"backendRefs": [pool_ref("a", 0), pool_ref("b", 1)]}])],
                     pools=[pool("a"), pool("b")])
    rng = random.Random(1)
    assert {gr.decide(base, facts(8081), "m", rng=rng).server.name for _ in range(200)} == {"b"}


def test_missing_inference_pool_is_a_500_naming_it() -> None:
    base, gr = build([gateway("gw", ("http", 8081))], http_routes=[http_route("r", [{"backendRefs": [
        pool_ref("ghost")]}])])
    with pytest.raises(RequestError) as err:
        gr.decide(base, facts(8081), "m")
    assert err.value.status == 500 and "apps/ghost" in err.value.message


def test_service_backends_are_not_served() -> None:
    base, gr = build([gateway("gw", ("http", 8081))],
                     http_routes=[http_route("r", [{"backendRefs": [{"name": "svc", "port": 80}]}])])
    with pytest.raises(RequestError) as err:
        gr.decide(base, facts(8081), "m")
    assert err.value.code == "backend_not_found"


# ---- EPP headers ------------------------------------------------------------------------------


def test_destination_endpoint_subset_header_is_parsed_as_addresses() -> None:
    headers = CIMultiDict({"X-Gateway-Destination-Endpoint-Subset": "10.0.0.1:8000, 10.0.0.2:8000"})
    assert endpoint_subset(headers) == frozenset({"10.0.0.1:8000", "10.0.0.2:8000"})
    assert endpoint_subset(CIMultiDict()) is None


def test_pool_decision_carries_the_subset_and_the_model_rewrite() -> None:
    base, gr = build([gateway("gw", ("http", 8081))],
                     http_routes=[http_route("r", [{"backendRefs": [pool_ref("p")]}])], pools=[pool("p")])
    d = gr.decide(base, facts(8081, headers={"x-gateway-destination-endpoint": "127.0.0.9:8000",
                                             "x-gateway-model-name-rewrite": "llama-lora-7"}), "llama")
    assert isinstance(d, GatewayDecision)
    assert d.subset == frozenset({"127.0.0.9:8000"}) and d.upstream_model == "llama-lora-7"


# ---- endpoints of pools ------------------------------------------------------------------------


def test_pool_selects_ready_pods_once_per_target_port() -> None:
    gw = GatewayTable.build([], [], [pool("p", ports=(8000, 8001))], inference_extension=True)
    state = RouterState()
    state.update([], [], [PodInfo(name="a", namespace="apps", ip="127.1.0.5", labels={"app": "p"}),
                          PodInfo(name="b", namespace="apps", ip="127.1.0.6", labels={"app": "p"}, ready=False),
                          PodInfo(name="c", namespace="other", ip="127.1.0.7", labels={"app": "p"})],
                 pools=list(gw.pools.values()))
    eps = state.endpoints_of(gw.pools["apps/p"])
    assert sorted(e.address for e in eps) == ["127.1.0.5:8000", "127.1.0.5:8001"]


# ---- allowedRoutes (opt-in) --------------------------------------------------------------------


def allowing(obj: dict[str, Any], frm: str) -> dict[str, Any]:
    for listener in obj["spec"]["listeners"]:
        listener["allowedRoutes"] = {"namespaces": {"from": frm}}
    return obj


def test_allowed_routes_are_ignored_unless_enforced() -> None:
    gw = GatewayTable.build([allowing(gateway("gw", ("http", 8081)), "Same")],
                            [http_route("r", [{"backendRefs": [pool_ref("p")]}])], [pool("p")],
                            inference_extension=True)
    assert gw.attached_routes == {"apps/r": ["gw/gw/http"]}


@pytest.mark.parametrize(("frm", "attached"), [("Same", False), ("All", True), ("Selector", False)])
def test_enforced_allowed_routes_admit_namespaces(frm: str, attached: bool) -> None:
    gw = GatewayTable.build([allowing(gateway("gw", ("http", 8081)), frm)],
                            [http_route("r", [{"backendRefs": [pool_ref("p")]}])], [pool("p")],
                            model_routes=[model_route("m", "chat", "s", [{"name": "gw", "namespace": "gw"}])],
                            inference_extension=True, enforce_allowed_routes=True)
    listener = gw.listener_for(8081, "h")
    assert listener is not None
    assert ("apps/r" in gw.attached_routes) is attached and ("apps/r" in gw.denied_routes) is not attached
    assert gw.modelroute_attached("apps/m", listener) is attached


def test_enforced_same_namespace_admits_routes_next_to_the_gateway() -> None:
    gw = GatewayTable.build([allowing(gateway("gw", ("http", 8081), ns="apps"), "Same")],
                            [http_route("r", [{"backendRefs": [pool_ref("p")]}], parents=[{"name": "gw"}])],
                            [pool("p")], inference_extension=True, enforce_allowed_routes=True)
    assert gw.attached_routes == {"apps/r": ["apps/gw/http"]}


def test_model_names_are_those_reachable_on_the_listener() -> None:
    base, gr = build([gateway("custom", ("http", 8081))],
                     routes=[model_route("r1", "plain", "s"),
                             model_route("r2", "bound", "s", [{"name": "custom", "namespace": "gw"}])],
                     servers=[model_server("s", "m")])
    assert gr.model_names(base, MAIN, "h") == ["plain"]
    assert gr.model_names(base, 8081, "h") == ["bound"]
    assert gr.model_names(base, 9999, "h") == []
