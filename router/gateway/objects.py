"""Gateway, HTTPRoute and InferencePool objects compiled for matching.

Inputs are the objects as dicts (camelCase, as the API server stores them). Defaults follow
the Gateway API: a parentRef's kind is Gateway and its namespace the route's; a path match
without type is PathPrefix "/"; a header or query match without type is Exact; a backendRef
weight defaults to 1 and 0 sends no traffic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from router.gateway.filters import NO_FILTERS, RuleFilters, compile_filters
from router.routing import Route, RouteConfigError, Rule, Server, Target

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
INFERENCE_GROUP = "inference.networking.k8s.io"
INFERENCE_VERSION = "v1"
SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")


def _meta(obj: Mapping[str, Any], kind: str) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise RouteConfigError(f"{kind}: metadata.name is required")
    return meta.get("namespace") or "default", name, str(meta.get("creationTimestamp") or "")


# ---- Gateway --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertRef:
    """One entry of a listener's `tls.certificateRefs` (a SecretObjectReference)."""

    namespace: str
    name: str
    group: str = ""
    kind: str = "Secret"


@dataclass(frozen=True)
class Listener:
    gateway: str  # namespace/name of its Gateway
    name: str
    port: int
    protocol: str
    hostname: str | None = None  # None: every host
    allowed_from: str = "Same"  # allowedRoutes.namespaces.from: Same (the API default), All, Selector
    certificate_refs: tuple[CertRef, ...] = ()  # HTTPS: tls.certificateRefs (mode Terminate)

    @property
    def id(self) -> str:
        return f"{self.gateway}/{self.name}"

    def allows(self, route_namespace: str) -> bool:
        """allowedRoutes for a route in `route_namespace` (Selector needs namespace labels: refused)."""
        if self.allowed_from == "All":
            return True
        return self.allowed_from == "Same" and route_namespace == self.gateway.split("/", 1)[0]

    def host_rank(self, host: str) -> int:
        """How specifically this listener claims a host: 3 exact, 2 wildcard, 1 any, 0 not at all."""
        if self.hostname is None:
            return 1
        return 3 if self.hostname == host else 2 if wildcard_match(self.hostname, host) else 0


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    class_name: str
    listeners: tuple[Listener, ...]
    unsupported: tuple[str, ...] = ()  # listener names skipped, with the reason

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def compile_gateway(obj: Mapping[str, Any]) -> Gateway:
    namespace, name, _ = _meta(obj, "Gateway")
    where = f"Gateway {namespace}/{name}"
    spec = obj.get("spec") or {}
    class_name = spec.get("gatewayClassName")
    if not isinstance(class_name, str) or not class_name:
        raise RouteConfigError(f"{where}: spec.gatewayClassName is required")
    listeners: list[Listener] = []
    unsupported: list[str] = []
    for i, item in enumerate(spec.get("listeners") or ()):
        lname = item.get("name") or f"listener-{i}"
        port = item.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise RouteConfigError(f"{where}: spec.listeners[{i}].port: expected 1..65535, got {port!r}")
        protocol = item.get("protocol") or "HTTP"
        if protocol not in SUPPORTED_PROTOCOLS:
            # TLS (TLSRoute, Passthrough), TCP, UDP: the router terminates HTTP only.
            unsupported.append(f"{lname}: protocol {protocol} is not supported (only HTTP and HTTPS)")
            continue
        tls = item.get("tls") or {}
        refs: list[CertRef] = []
        if protocol == "HTTPS":
            mode = tls.get("mode") or "Terminate"
            if mode != "Terminate":
                unsupported.append(f"{lname}: tls.mode {mode} is not supported for HTTPS (only Terminate)")
                continue
            for j, ref in enumerate(tls.get("certificateRefs") or ()):
                if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref["name"]:
                    raise RouteConfigError(f"{where}: spec.listeners[{i}].tls.certificateRefs[{j}].name is required")
                refs.append(CertRef(namespace=ref.get("namespace") or namespace, name=ref["name"],
                                    group=ref.get("group") or "", kind=ref.get("kind") or "Secret"))
        hostname = item.get("hostname") or None
        allowed = ((item.get("allowedRoutes") or {}).get("namespaces") or {}).get("from") or "Same"
        listeners.append(Listener(gateway=f"{namespace}/{name}", name=lname, port=port, protocol=protocol,
                                  hostname=hostname.lower() if hostname else None, allowed_from=allowed,
                                  certificate_refs=tuple(refs)))
    return Gateway(namespace=namespace, name=name, class_name=class_name, listeners=tuple(listeners),
                   unsupported=tuple(unsupported))


def wildcard_match(pattern: str, host: str) -> bool:
    """Gateway API wildcard hostnames: '*.example.com' matches 'a.example.com' and 'a.b.example.com'."""
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]
    return host.endswith(suffix) and len(host) > len(suffix)


def normalize_host(host: str | None) -> str:
    """The Host header without port, brackets or trailing dot, lower-case."""
    if not host:
        return ""
    host = host.strip()
    if host.startswith("["):  # [::1]:8080
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".").lower()


# ---- parentRefs (HTTPRoute and ModelRoute) -------------------------------------------------


@dataclass(frozen=True)
class ParentRef:
    gateway: str  # namespace/name
    section: str | None = None
    port: int | None = None

    def attaches(self, listener: Listener) -> bool:
        return (self.gateway == listener.gateway and (self.section is None or self.section == listener.name)
                and (self.port is None or self.port == listener.port))


def compile_parent_refs(refs: Any, namespace: str, where: str) -> tuple[ParentRef, ...]:
    """The Gateway parents among `spec.parentRefs`; other kinds are ignored."""
    out: list[ParentRef] = []
    for i, ref in enumerate(refs or ()):
        if not isinstance(ref, Mapping) or not ref.get("name"):
            raise RouteConfigError(f"{where}: spec.parentRefs[{i}].name is required")
        if (ref.get("kind") or "Gateway") != "Gateway" or (ref.get("group") or GATEWAY_GROUP) != GATEWAY_GROUP:
            continue
        port = ref.get("port")
        out.append(ParentRef(gateway=f"{ref.get('namespace') or namespace}/{ref['name']}",
                             section=ref.get("sectionName") or None, port=int(port) if port else None))
    return tuple(out)


# ---- HTTPRoute -----------------------------------------------------------------------------

PATH_RANK = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}


@dataclass(frozen=True)
class PathMatch:
    type: str
    value: str
    regex: re.Pattern[str] | None = None
    prefix: str = ""  # PathPrefix without its trailing '/'

    def matches(self, path: str) -> bool:
        if self.type == "Exact":
            return path == self.value
        if self.type == "PathPrefix":
            # Segment-wise: '/v1' matches '/v1' and '/v1/x', not '/v10'; a trailing '/' is ignored.
            prefix = self.prefix
            return not prefix or path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None


@dataclass(frozen=True)
class ValueMatch:
    name: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, actual: str | None) -> bool:
        if actual is None:
            return False
        return actual == self.value if self.regex is None else self.regex.fullmatch(actual) is not None


@dataclass(frozen=True)
class RouteMatch:
    path: PathMatch
    method: str | None
    headers: tuple[ValueMatch, ...]
    query: tuple[ValueMatch, ...]

    def matches(self, path: str, method: str, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        return (self.path.matches(path) and (self.method is None or self.method == method)
                and all(h.matches(headers.get(h.name)) for h in self.headers)
                and all(q.matches(query.get(q.name)) for q in self.query))

    def precedence(self) -> tuple[int, int, int, int, int]:
        """Gateway API rule precedence (higher first): path type and length, method, headers, query."""
        p = self.path
        return (PATH_RANK[p.type], len(p.value.rstrip("/")) if p.type == "PathPrefix" else len(p.value),
                int(self.method is not None), len(self.headers), len(self.query))


@dataclass(frozen=True)
class BackendRef:
    kind: str  # "InferencePool" and "Service" (core) are served; other kinds resolve to nothing
    namespace: str
    name: str
    weight: int
    port: int | None = None  # Service: the Service port

    @property
    def pool_key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def served(self) -> bool:
        return self.kind in ("InferencePool", "Service")

    @property
    def server_key(self) -> str:
        """The key of the router server standing for it (InferencePool: namespace/name)."""
        if self.kind == "Service":
            return f"Service/{self.namespace}/{self.name}:{self.port}"
        return self.pool_key


@dataclass(frozen=True)
class HTTPRouteRule:
    index: int
    matches: tuple[RouteMatch, ...]
    backends: tuple[BackendRef, ...]
    decision_route: Route  # precompiled for RouteDecision (metrics, access log, limits)
    filters: RuleFilters = NO_FILTERS


class HTTPRouteKey(Route):
    """A Route standing for an HTTPRoute rule in RouteDecision; its key names the kind."""

    @property
    def key(self) -> str:
        return f"HTTPRoute/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class HTTPRoute:
    namespace: str
    name: str
    created: str
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[HTTPRouteRule, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def unsupported_filters(self) -> list[str]:
        return [f"rules[{r.index}].{u}" for r in self.rules for u in r.filters.unsupported]

    def host_rank(self, host: str) -> int:
        """3 an exact hostname, 2 a wildcard, 1 no hostnames (every host), 0 no match."""
        if not self.hostnames:
            return 1
        best = 0
        for h in self.hostnames:
            if h == host:
                return 3
            if wildcard_match(h, host):
                best = 2
        return best


def _compile_regex(value: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise RouteConfigError(f"{where}: invalid regular expression: {exc}") from None


def _value_matches(items: Any, where: str, lower: bool) -> tuple[ValueMatch, ...]:
    out: list[ValueMatch] = []
    for i, item in enumerate(items or ()):
        w = f"{where}[{i}]"
        name, value = item.get("name"), item.get("value")
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise RouteConfigError(f"{w}: name and value are required strings")
        kind = item.get("type") or "Exact"
        if kind not in ("Exact", "RegularExpression"):
            raise RouteConfigError(f"{w}.type: expected Exact or RegularExpression, got {kind!r}")
        regex = _compile_regex(value, f"{w}.value") if kind == "RegularExpression" else None
        out.append(ValueMatch(name=name.lower() if lower else name, value=value, regex=regex))
    return tuple(out)


def _route_match(obj: Mapping[str, Any], where: str) -> RouteMatch:
    path = obj.get("path") or {}
    ptype = path.get("type") or "PathPrefix"
    pvalue = path.get("value") or "/"
    if ptype not in PATH_RANK:
        raise RouteConfigError(f"{where}.path.type: expected Exact, PathPrefix or RegularExpression, got {ptype!r}")
    if not isinstance(pvalue, str) or (ptype != "RegularExpression" and not pvalue.startswith("/")):
        raise RouteConfigError(f"{where}.path.value: expected an absolute path, got {pvalue!r}")
    regex = _compile_regex(pvalue, f"{where}.path.value") if ptype == "RegularExpression" else None
    method = obj.get("method")
    return RouteMatch(path=PathMatch(type=ptype, value=pvalue, regex=regex, prefix=pvalue.rstrip("/")),
                      method=method.upper() if isinstance(method, str) else None,
                      headers=_value_matches(obj.get("headers"), f"{where}.headers", lower=True),
                      query=_value_matches(obj.get("queryParams"), f"{where}.queryParams", lower=False))


def _backend(obj: Mapping[str, Any], namespace: str, where: str) -> BackendRef:
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise RouteConfigError(f"{where}.name is required")
    group = obj.get("group") or ""
    kind = obj.get("kind") or "Service"
    weight = obj.get("weight", 1)
    weight = 1 if weight is None else weight
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        raise RouteConfigError(f"{where}.weight: expected a non-negative integer, got {weight!r}")
    port = obj.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise RouteConfigError(f"{where}.port: expected 1..65535, got {port!r}")
    if kind == "Service" and group in ("", "core"):
        if port is None:
            raise RouteConfigError(f"{where}.port is required for a Service")
        return BackendRef(kind="Service", namespace=obj.get("namespace") or namespace, name=name, weight=weight,
                          port=port)
    served = kind == "InferencePool" and group == INFERENCE_GROUP
    return BackendRef(kind="InferencePool" if served else f"{group or 'core'}/{kind}",
                      namespace=obj.get("namespace") or namespace, name=name, weight=weight)


def compile_http_route(obj: Mapping[str, Any]) -> HTTPRoute:
    namespace, name, created = _meta(obj, "HTTPRoute")
    where = f"HTTPRoute {namespace}/{name}"
    spec = obj.get("spec") or {}
    parents = compile_parent_refs(spec.get("parentRefs"), namespace, where)
    rules: list[HTTPRouteRule] = []
    for i, rule in enumerate(spec.get("rules") or ({},)):
        rwhere = f"{where}: spec.rules[{i}]"
        raw_matches = rule.get("matches") or [{}]  # no matches: PathPrefix "/"
        matches = tuple(_route_match(m, f"{rwhere}.matches[{j}]") for j, m in enumerate(raw_matches))
        backends = tuple(_backend(b, namespace, f"{rwhere}.backendRefs[{j}]")
                         for j, b in enumerate(rule.get("backendRefs") or ()))
        filters = compile_filters(rule.get("filters"), rwhere,
                                  prefix_match=all(m.path.type == "PathPrefix" for m in matches))
        per_backend = [f"backendRefs[{j}].filters" for j, b in enumerate(rule.get("backendRefs") or ())
                       if isinstance(b, Mapping) and b.get("filters")]
        if per_backend:  # not applied per backend: refusing them is safer than ignoring them
            filters = replace(filters, unsupported=filters.unsupported + tuple(per_backend))
        served = [b for b in backends if b.served and b.weight > 0]
        targets = tuple(Target(server=b.server_key, weight=b.weight) for b in served)
        decision_route = HTTPRouteKey(
            namespace=namespace, name=name, created=created, model_name="", lora_adapters=(),
            rules=(Rule(name=rule.get("name") or f"rules[{i}]", headers=(), uri=None, body_model=None,
                        targets=targets, total_weight=sum(t.weight for t in targets)),),
            has_parent_refs=True)
        rules.append(HTTPRouteRule(index=i, matches=matches, backends=backends, decision_route=decision_route,
                                   filters=filters))
    hostnames = tuple(str(h).rstrip(".").lower() for h in spec.get("hostnames") or ())
    return HTTPRoute(namespace=namespace, name=name, created=created, parents=parents, hostnames=hostnames,
                     rules=tuple(rules))


# ---- InferencePool -------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolServer(Server):
    """An InferencePool as a router server: its pods are the selector's, on each target port."""

    pool_ports: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        return f"InferencePool/{self.namespace}/{self.name}"

    def target_ports(self, default: int) -> tuple[int, ...]:
        return self.pool_ports


ENGINE_ANNOTATION = "caldera.dev/inference-engine"  # vLLM (default) or SGLang: which metric names to scrape


def compile_pool(obj: Mapping[str, Any]) -> PoolServer:
    namespace, name, _ = _meta(obj, "InferencePool")
    where = f"InferencePool {namespace}/{name}"
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    labels = selector.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not labels:
        raise RouteConfigError(f"{where}: spec.selector.matchLabels must select at least one label")
    ports: list[int] = []
    for i, p in enumerate(spec.get("targetPorts") or ()):
        number = p.get("number") if isinstance(p, Mapping) else None
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            raise RouteConfigError(f"{where}: spec.targetPorts[{i}].number: expected 1..65535, got {number!r}")
        ports.append(number)
    if not ports:
        raise RouteConfigError(f"{where}: spec.targetPorts must list at least one port")
    engine = ((obj.get("metadata") or {}).get("annotations") or {}).get(ENGINE_ANNOTATION) or "vLLM"
    if engine not in ("vLLM", "SGLang"):
        raise RouteConfigError(f"{where}: annotation {ENGINE_ANNOTATION} must be vLLM or SGLang, got {engine!r}")
    unique = tuple(dict.fromkeys(ports))
    return PoolServer(namespace=namespace, name=name, model=None, engine=engine,
                      match_labels=tuple(sorted(labels.items())), pd_group=None, port=unique[0], kv_connector=None,
                      pool_ports=unique)
