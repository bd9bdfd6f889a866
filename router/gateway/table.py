"""The compiled Gateway view: listeners by port, HTTPRoute rules attached to each listener in
Gateway API precedence order, InferencePools, and the Gateway parents of ModelRoutes.

Built from the full caches on every change (level-triggered, like `RouteTable`), so the order
in which Gateways, HTTPRoutes and pools arrive never matters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from router.gateway.objects import (
    Gateway,
    HTTPRoute,
    HTTPRouteRule,
    Listener,
    ParentRef,
    PoolServer,
    RouteMatch,
    compile_gateway,
    compile_http_route,
    compile_parent_refs,
    compile_pool,
    wildcard_match,
)
from router.gateway.services import ServiceBackends, resolve_services
from router.gateway.tls import Certificate, CertificateRefError, PortTLS, resolve
from router.routing import RouteConfigError

log = logging.getLogger(__name__)

DEFAULT_CLASS_NAMES = ("kthena-router", "caldera-router")


@dataclass(frozen=True)
class Entry:
    """One HTTPRoute match, as a candidate for a request on one listener."""

    route: HTTPRoute
    rule: HTTPRouteRule
    match: RouteMatch
    match_index: int

    def sort_key(self) -> tuple[Any, ...]:
        return (tuple(-x for x in self.match.precedence()), self.route.created, self.route.key,
                self.rule.index, self.match_index)


def hosts_intersect(listener_host: str | None, route_hosts: tuple[str, ...]) -> bool:
    if listener_host is None or not route_hosts:
        return True
    return any(h == listener_host or wildcard_match(listener_host, h) or wildcard_match(h, listener_host)
               or (h.startswith("*.") and listener_host.startswith("*.")
                   and (h.endswith(listener_host[1:]) or listener_host.endswith(h[1:])))
               for h in route_hosts)


def _listener_id(listener: Listener) -> tuple[str, str]:
    return (listener.gateway, listener.name)


@dataclass(frozen=True)
class ListenerProblem:
    """Why a listener of one of our Gateways is not served: the status condition that says so."""

    condition: str  # ResolvedRefs, Conflicted or Accepted (each then False, Conflicted True)
    reason: str  # InvalidCertificateRef, RefNotPermitted, ProtocolConflict, PortUnavailable
    message: str


@dataclass
class GatewayTable:
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    inference_extension: bool = False
    # Honour listeners' allowedRoutes (off: routes of any namespace attach, as in Kthena).
    enforce_allowed_routes: bool = False
    gateways: dict[str, Gateway] = field(default_factory=dict)  # ours only, by namespace/name
    ignored_gateways: list[str] = field(default_factory=list)  # other classes
    http_routes: dict[str, HTTPRoute] = field(default_factory=dict)
    pools: dict[str, PoolServer] = field(default_factory=dict)  # by namespace/name
    by_port: dict[int, tuple[Listener, ...]] = field(default_factory=dict)
    entries: dict[tuple[str, str], tuple[Entry, ...]] = field(default_factory=dict)
    attached_routes: dict[str, list[str]] = field(default_factory=dict)  # HTTPRoute key -> listener ids
    denied_routes: dict[str, list[str]] = field(default_factory=dict)  # refused by allowedRoutes
    modelroute_parents: dict[str, tuple[ParentRef, ...]] = field(default_factory=dict)
    # Listeners not served (by Listener.id) and the TLS of each HTTPS port (router.gateway.tls).
    problems: dict[str, ListenerProblem] = field(default_factory=dict)
    tls_ports: dict[int, PortTLS] = field(default_factory=dict)
    # Service backendRefs: their servers (by key), endpoint records and unresolvable ones.
    services: ServiceBackends = field(default_factory=lambda: ServiceBackends({}, [], {}))
    errors: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, gateways: Iterable[Mapping[str, Any]], http_routes: Iterable[Mapping[str, Any]] = (),
              pools: Iterable[Mapping[str, Any]] = (), model_routes: Iterable[Mapping[str, Any]] = (),
              class_names: Iterable[str] = DEFAULT_CLASS_NAMES, inference_extension: bool = False,
              enforce_allowed_routes: bool = False, secrets: Iterable[Mapping[str, Any]] | None = (),
              main_port: int | None = None, services: Iterable[Mapping[str, Any]] | None = (),
              endpoint_slices: Iterable[Mapping[str, Any]] | None = ()) -> GatewayTable:
        """`secrets`: the TLS Secrets HTTPS listeners may reference (None: the router does not read
        Secrets); `main_port`: the router's own plain-HTTP port (no HTTPS listener there);
        `services`, `endpoint_slices`: for Service backendRefs (None: not watched)."""
        t = cls(class_names=tuple(class_names), inference_extension=inference_extension,
                enforce_allowed_routes=enforce_allowed_routes)
        for obj in gateways:
            try:
                gw = compile_gateway(obj)
            except RouteConfigError as exc:
                t.errors.append(str(exc))
                continue
            if gw.class_name not in t.class_names:
                t.ignored_gateways.append(gw.key)
                continue
            t.gateways[gw.key] = gw
            t.errors.extend(f"Gateway {gw.key}: listener {reason}" for reason in gw.unsupported)
        t._place_listeners(secrets, main_port)
        for obj in model_routes:
            meta = obj.get("metadata") or {}
            ns = meta.get("namespace") or "default"
            key = f"{ns}/{meta.get('name')}"
            try:
                parents = compile_parent_refs((obj.get("spec") or {}).get("parentRefs"), ns, f"ModelRoute {key}")
            except RouteConfigError as exc:
                t.errors.append(str(exc))
                continue
            if parents:
                t.modelroute_parents[key] = parents
        if inference_extension:
            for obj in pools:
                try:
                    pool = compile_pool(obj)
                except RouteConfigError as exc:
                    t.errors.append(str(exc))
                    continue
                t.pools[f"{pool.namespace}/{pool.name}"] = pool
            t._attach(http_routes)
            t.services = resolve_services(
                ((r.namespace, b) for r in t.http_routes.values() for rule in r.rules for b in rule.backends),
                services, endpoint_slices)
        return t

    def _place_listeners(self, secrets: Iterable[Mapping[str, Any]] | None, main_port: int | None) -> None:
        """Listeners by port. One protocol per port (the first Gateway's, by namespace/name, wins;
        the others are Conflicted); an HTTPS listener needs a usable certificate and a port other
        than the router's main one. A listener with a problem is not served."""
        by_key = None if secrets is None else {
            f"{(s.get('metadata') or {}).get('namespace') or 'default'}/{(s.get('metadata') or {}).get('name')}": s
            for s in secrets}
        ports: dict[int, list[Listener]] = {}
        protocols: dict[int, tuple[str, str]] = {}  # port -> (protocol, the listener that set it)
        tls: dict[int, list[tuple[str | None, Certificate]]] = {}
        for gw in sorted(self.gateways.values(), key=lambda g: g.key):
            for listener in gw.listeners:
                first = protocols.setdefault(listener.port, (listener.protocol, listener.id))
                if first[0] != listener.protocol:
                    self._problem(listener, ListenerProblem(
                        "Conflicted", "ProtocolConflict",
                        f"port {listener.port} already serves {first[0]} (listener {first[1]})"))
                    continue
                if listener.protocol == "HTTPS":
                    if listener.port == main_port:
                        self._problem(listener, ListenerProblem(
                            "Accepted", "PortUnavailable",
                            f"port {listener.port} is the router's main port, which serves plain HTTP"))
                        continue
                    try:
                        cert = resolve(gw.namespace, listener.certificate_refs, by_key)
                    except CertificateRefError as exc:
                        self._problem(listener, ListenerProblem("ResolvedRefs", exc.reason, exc.message))
                        continue
                    tls.setdefault(listener.port, []).append((listener.hostname, cert))
                ports.setdefault(listener.port, []).append(listener)
        self.by_port = {p: tuple(ls) for p, ls in ports.items()}
        self.tls_ports = {p: tuple(entries) for p, entries in tls.items()}

    def _problem(self, listener: Listener, problem: ListenerProblem) -> None:
        self.problems[listener.id] = problem

    def port_tls(self) -> dict[int, PortTLS | None]:
        """What each served port needs: None for plain HTTP, else its HTTPS listeners' certificates."""
        return {p: self.tls_ports.get(p) for p in self.by_port}

    def _attach(self, http_routes: Iterable[Mapping[str, Any]]) -> None:
        per_listener: dict[tuple[str, str], list[Entry]] = {}
        for obj in http_routes:
            try:
                route = compile_http_route(obj)
            except RouteConfigError as exc:
                self.errors.append(str(exc))
                continue
            self.http_routes[route.key] = route
            for listeners in self.by_port.values():
                for listener in listeners:
                    if not any(p.attaches(listener) for p in route.parents):
                        continue
                    if not hosts_intersect(listener.hostname, route.hostnames):
                        continue
                    if self.enforce_allowed_routes and not listener.allows(route.namespace):
                        self.denied_routes.setdefault(route.key, []).append(f"{listener.gateway}/{listener.name}")
                        continue
                    self.attached_routes.setdefault(route.key, []).append(f"{listener.gateway}/{listener.name}")
                    bucket = per_listener.setdefault(_listener_id(listener), [])
                    for rule in route.rules:
                        bucket.extend(Entry(route, rule, m, j) for j, m in enumerate(rule.matches))
        self.entries = {lid: tuple(sorted(es, key=Entry.sort_key)) for lid, es in per_listener.items()}

    # ---- queries ---------------------------------------------------------------------------

    def ports(self) -> set[int]:
        return set(self.by_port)

    def listener_for(self, port: int, host: str) -> Listener | None:
        """The listener on `port` that claims `host` most specifically (exact, longest wildcard, any)."""
        best: Listener | None = None
        best_rank = (0, 0)
        for listener in self.by_port.get(port, ()):
            rank = (listener.host_rank(host), len(listener.hostname or ""))
            if rank[0] and rank > best_rank:
                best, best_rank = listener, rank
        return best

    def modelroute_attached(self, route_key: str, listener: Listener) -> bool:
        if self.enforce_allowed_routes and not listener.allows(route_key.split("/", 1)[0]):
            return False
        return any(p.attaches(listener) for p in self.modelroute_parents.get(route_key, ()))

    def entries_for(self, listener: Listener) -> tuple[Entry, ...]:
        return self.entries.get(_listener_id(listener), ())
