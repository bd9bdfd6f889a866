"""Gateway-mode request matching: pure functions over `RouteTable` and `GatewayTable`.

A request arrives on a port. On the router's main port, ModelRoutes without parentRefs apply
(as without Gateway API). On any port, the Gateway listener that claims the request's host
selects the ModelRoutes whose parentRefs name it (Gateway, optional sectionName and port).
ModelRoutes are tried oldest first, as always. If none matches and the Inference Extension is
on, the HTTPRoutes attached to that listener are matched in Gateway API precedence order and
the matched rule's InferencePool backends are picked by weight.

EPP protocol headers honoured on InferencePool routes (routers.md §1):
- `x-gateway-destination-endpoint-subset` / `x-gateway-destination-endpoint`: comma-separated
  `ip:port` lists that restrict the candidate endpoints (the scheduler picks among them; none
  ready -> 503);
- `x-gateway-model-name-rewrite`: the model name sent to the engine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace

from router.gateway.filters import HeaderEdit, UpstreamEdit, redirect_location, upstream_edit
from router.gateway.objects import HTTPRoute, HTTPRouteRule, Listener, RouteMatch, normalize_host
from router.gateway.table import GatewayTable
from router.request import RequestError
from router.routing import (
    ProviderDecision,
    Route,
    RouteDecision,
    RouteTable,
    Server,
    match,
    pick_target,
    split_point,
)

SUBSET_HEADER = "x-gateway-destination-endpoint-subset"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
MODEL_REWRITE_HEADER = "x-gateway-model-name-rewrite"


@dataclass(frozen=True)
class GatewayDecision(RouteDecision):
    gateway: str | None = None  # namespace/name of the Gateway whose listener took the request
    listener: str | None = None
    subset: frozenset[str] | None = None  # EPP: only these endpoint addresses
    upstream: UpstreamEdit | None = None  # HTTPRoute RequestHeaderModifier / URLRewrite
    response_headers: HeaderEdit | None = None  # HTTPRoute ResponseHeaderModifier


class RedirectRequest(Exception):
    """A matched HTTPRoute rule's RequestRedirect: answer `status` with `location`."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"{status} {location}")
        self.status = status
        self.location = location


@dataclass(frozen=True)
class RequestFacts:
    """What Gateway matching needs from one HTTP request."""

    port: int | None  # local port the request arrived on
    host: str  # normalized Host header
    path: str
    method: str
    headers: Mapping[str, str]  # case-insensitive or lower-case names
    query: Mapping[str, str]
    scheme: str = "http"
    query_string: str = ""  # as received, kept by redirects

    @classmethod
    def of(cls, port: int | None, host: str | None, path: str, method: str, headers: Mapping[str, str],
           query: Mapping[str, str], scheme: str = "http", query_string: str = "") -> RequestFacts:
        return cls(port=port, host=normalize_host(host), path=path, method=method.upper(), headers=headers,
                   query=query, scheme=scheme, query_string=query_string)


def route_view(base: RouteTable, extra: list[Route], include_base: bool) -> RouteTable:
    """`base` with its routes replaced by (base's +) `extra`, indexed oldest first."""
    routes = sorted([*(base.routes if include_base else ()), *extra],
                    key=lambda r: (r.created, r.namespace, r.name))
    by_model: dict[str, list[Route]] = {}
    by_lora: dict[str, list[Route]] = {}
    for route in routes:
        if route.model_name:
            by_model.setdefault(route.model_name, []).append(route)
        for lora in route.lora_adapters:
            by_lora.setdefault(lora, []).append(route)
    return replace(base, routes=routes, by_model=by_model, by_lora=by_lora)


def match_http_route(gw: GatewayTable, listener: Listener, facts: RequestFacts
                     ) -> tuple[HTTPRoute, HTTPRouteRule, RouteMatch] | None:
    """The highest-precedence HTTPRoute rule on `listener` matching the request.

    Hostname specificity ranks first (exact, wildcard, none), then the Gateway API order:
    exact path, longest prefix, method, most header matches, most query matches, oldest
    route, namespace/name, rule order.
    """
    best: tuple[HTTPRoute, HTTPRouteRule, RouteMatch] | None = None
    best_rank = 0
    for entry in gw.entries_for(listener):
        rank = entry.route.host_rank(facts.host)
        if rank <= best_rank:
            continue
        if entry.match.matches(facts.path, facts.method, facts.headers, facts.query):
            best, best_rank = (entry.route, entry.rule, entry.match), rank
            if rank == 3:
                break
    return best


def endpoint_subset(headers: Mapping[str, str]) -> frozenset[str] | None:
    raw = headers.get(DESTINATION_HEADER) or headers.get(SUBSET_HEADER)
    if not raw:
        return None
    subset = frozenset(a.strip() for a in raw.split(",") if a.strip())
    return subset or None


def decide_pool(gw: GatewayTable, route: HTTPRoute, rule: HTTPRouteRule, listener: Listener, model: str,
                headers: Mapping[str, str], split_key: str | None, rng: random.Random | None,
                facts: RequestFacts | None = None, matched: RouteMatch | None = None) -> GatewayDecision:
    where = f"HTTPRoute {route.key} rule {rule.index}"
    filters = rule.filters
    if filters.unsupported:  # never skipped (spec): the rule answers an error instead
        raise RequestError(500, f"{where} uses unsupported filters: {', '.join(filters.unsupported)}",
                           code="unsupported_filter", err_type="server_error")
    prefix = matched.path.value if matched is not None and matched.path.type == "PathPrefix" else None
    if filters.redirect is not None and facts is not None:
        raise RedirectRequest(filters.redirect.status, redirect_location(
            filters.redirect, facts.scheme, facts.host, facts.port, facts.path, facts.query_string, prefix))
    edit = upstream_edit(filters, facts.path, prefix) if facts is not None else None
    decision_route = rule.decision_route
    weighted = decision_route.rules[0]
    if weighted.total_weight == 0:
        raise RequestError(500, f"{where} has no InferencePool or Service backend with a weight above 0",
                           code="backend_not_found", err_type="server_error")
    target = pick_target(weighted, split_point(split_key, route.key, rng))
    pool: Server | None = gw.pools.get(target.server) or gw.services.servers.get(target.server)
    if pool is None:
        unresolved = gw.services.errors.get(target.server)
        why = unresolved[1] if unresolved else f"InferencePool {target.server} does not exist"
        raise RequestError(500, f"backend of {where} cannot be served: {why}", code="backend_not_found",
                           err_type="server_error")
    upstream = headers.get(MODEL_REWRITE_HEADER) or model
    return GatewayDecision(route=decision_route, rule=weighted, server=pool, upstream_model=upstream, lora=None,
                           gateway=listener.gateway, listener=listener.name, subset=endpoint_subset(headers),
                           upstream=edit, response_headers=filters.response_headers)


class GatewayRouter:
    """Per-listener ModelRoute views (cached per RouteTable) and the full decision."""

    def __init__(self, gw: GatewayTable, attached_routes: list[Route], main_port: int) -> None:
        self.gw = gw
        self.attached_routes = attached_routes  # compiled ModelRoutes that have parentRefs
        self.main_port = main_port
        self._views: dict[tuple[str, str, bool], RouteTable] = {}
        self._base: RouteTable | None = None  # the table the cached views were derived from

    def view(self, base: RouteTable, listener: Listener | None, on_main: bool) -> RouteTable | None:
        if listener is None:
            return base if on_main else None
        if base is not self._base:
            self._views.clear()
            self._base = base
        key = (listener.gateway, listener.name, on_main)
        view = self._views.get(key)
        if view is None:
            mine = [r for r in self.attached_routes if self.gw.modelroute_attached(r.key, listener)]
            view = self._views[key] = route_view(base, mine, include_base=on_main)
        return view

    def model_names(self, base: RouteTable, port: int | None, host: str) -> list[str]:
        """The ModelRoute model and LoRA names a request on (port, host) can reach."""
        on_main = port is None or port == self.main_port
        listener = self.gw.listener_for(port, normalize_host(host)) if port is not None else None
        table = self.view(base, listener, on_main)
        return table.model_names() if table is not None else []

    def decide(self, base: RouteTable, facts: RequestFacts, model: str, split_key: str | None = None,
               rng: random.Random | None = None) -> RouteDecision | ProviderDecision:
        on_main = facts.port is None or facts.port == self.main_port
        listener = self.gw.listener_for(facts.port, facts.host) if facts.port is not None else None
        table = self.view(base, listener, on_main)
        if table is None:
            raise RequestError(404, f"no Gateway listener on port {facts.port} accepts host '{facts.host}'",
                               code="listener_not_found")
        http_routes = listener is not None and self.gw.inference_extension
        if http_routes and model not in table.by_model and model not in table.by_lora:
            assert listener is not None
            hit = match_http_route(self.gw, listener, facts)  # no ModelRoute for it: skip the raise
            if hit is not None:
                return decide_pool(self.gw, hit[0], hit[1], listener, model, facts.headers, split_key, rng,
                                   facts, hit[2])
        try:
            decision = match(table, model, facts.path, facts.headers, split_key, rng)
        except RequestError:
            if not http_routes:
                raise
            assert listener is not None
            hit = match_http_route(self.gw, listener, facts)
            if hit is None:
                raise
            return decide_pool(self.gw, hit[0], hit[1], listener, model, facts.headers, split_key, rng, facts,
                               hit[2])
        if listener is None or not isinstance(decision, RouteDecision):
            return decision
        return GatewayDecision(route=decision.route, rule=decision.rule, server=decision.server,
                               upstream_model=decision.upstream_model, lora=decision.lora,
                               gateway=listener.gateway, listener=listener.name)
