"""The router's view of the world: compiled routes, servers and their endpoints.

Both static mode and cluster discovery feed `RouterState.update` with plain data; endpoints
that survive an update keep their in-flight counters and metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from router.api import ModelRoute, ModelServer
from router.endpoints import Endpoint
from router.providers.provider import Provider
from router.routing import RouteConfigError, RouteTable, Server, compile_route, compile_server

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"vLLM": 8000, "SGLang": 30000}


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    ip: str | None
    labels: Mapping[str, str]
    ready: bool = True
    address: str | None = None  # static mode: host:port, overrides ip + server port
    kv_events: str | None = None
    kv_replay: str | None = None
    bootstrap_port: int | None = None


@dataclass
class RouterState:
    table: RouteTable = field(default_factory=RouteTable)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # server key -> endpoint names
    errors: list[str] = field(default_factory=list)
    on_removed: list[Callable[[Endpoint], None]] = field(default_factory=list)
    on_added: list[Callable[[Endpoint], None]] = field(default_factory=list)
    generation: int = 0

    def update(self, routes: Iterable[Mapping[str, Any]], servers: Iterable[Mapping[str, Any]],
               pods: Iterable[PodInfo], providers: Iterable[Provider] = (), pools: Iterable[Server] = (),
               extra_pods: Iterable[PodInfo] = ()) -> None:
        """Rebuild from plain data. `pools` (InferencePools, compiled by router.gateway) select
        endpoints as ModelServers do, one endpoint per target port; `extra_pods` are endpoint
        records that are not pods (router.gateway: the EndpointSlice addresses of Services)."""
        errors: list[str] = []
        compiled_routes = []
        for obj in routes:
            try:
                _validate(ModelRoute, obj)
                compiled_routes.append(compile_route(obj))
            except RouteConfigError as exc:
                errors.append(str(exc))
        compiled_servers: list[Server] = []
        for obj in servers:
            try:
                _validate(ModelServer, obj)
                compiled_servers.append(compile_server(obj))
            except RouteConfigError as exc:
                errors.append(str(exc))
        for e in errors:
            log.warning("ignoring invalid object", extra={"reason": e})
        compiled_servers.extend(pools)
        table = RouteTable.build(compiled_routes, compiled_servers, providers)
        ready = [p for p in (*pods, *extra_pods) if p.ready and (p.ip or p.address)]
        new_endpoints: dict[str, Endpoint] = {}
        members: dict[str, list[str]] = {}
        for server in compiled_servers:
            for pod in ready:
                if not server.selects(pod.namespace, pod.labels):
                    continue
                ports = getattr(server, "pool_ports", None) or (server.port or DEFAULT_PORTS[server.engine],)
                for port in ports:
                    address = pod.address or f"{pod.ip}:{port}"
                    name = f"{pod.namespace}/{pod.name}"
                    existing = new_endpoints.get(name)
                    if existing is not None and existing.address != address:
                        name = f"{name}:{address.rsplit(':', 1)[1]}"
                    ep = new_endpoints.get(name) or self._reuse(name, address)
                    ep.server = server.key
                    ep.engine = server.engine
                    ep.labels = dict(pod.labels)
                    ep.role = server.role_of(pod.labels)
                    ep.pd_group = pod.labels.get(server.pd_group.group_key) if server.pd_group else None
                    ep.kv_events = pod.kv_events
                    ep.kv_replay = pod.kv_replay
                    ep.bootstrap_port = pod.bootstrap_port
                    new_endpoints[name] = ep
                    members.setdefault(server.key, []).append(name)
        for name, old in self.endpoints.items():
            if name not in new_endpoints or new_endpoints[name] is not old:
                for cb in self.on_removed:
                    cb(old)
        added = [ep for name, ep in new_endpoints.items() if self.endpoints.get(name) is not ep]
        self.table, self.endpoints, self.members, self.errors = table, new_endpoints, members, errors
        self.generation += 1
        for ep in added:
            for cb in self.on_added:
                cb(ep)

    def _reuse(self, name: str, address: str) -> Endpoint:
        old = self.endpoints.get(name)
        if old is not None and old.address == address:
            return old
        return Endpoint(name=name, address=address, server="")

    def endpoints_of(self, server: Server, role: str | None = None) -> list[Endpoint]:
        eps = [self.endpoints[n] for n in self.members.get(server.key, ())]
        if role is not None:
            eps = [e for e in eps if e.role == role]
        return eps

    def snapshot(self) -> dict[str, Any]:
        t = self.table
        return {
            "generation": self.generation,
            "errors": self.errors,
            "routes": [{"key": r.key, "modelName": r.model_name, "loraAdapters": list(r.lora_adapters),
                        "rules": [{"name": rule.name, "targets": [[x.server or x.provider, x.weight] for x in rule.targets]}
                                  for rule in r.rules]} for r in t.routes],
            "servers": [{"key": s.key, "model": s.model, "engine": s.engine, "pd": s.pd_group is not None,
                         "kvConnector": s.kv_connector, "endpoints": self.members.get(s.key, [])}
                        for s in t.servers.values()],
            "endpoints": [e.snapshot() for e in self.endpoints.values()],
            "providers": [{"key": p.key, "type": p.provider_type, "baseURL": p.base_url, "model": p.model,
                           "ready": p.ready, "reason": p.not_ready_reason} for p in t.providers.values()],
        }


def _validate(model: type[ModelRoute] | type[ModelServer], obj: Mapping[str, Any]) -> None:
    """Check an object against the API model (the same one the CRDs and webhook use)."""
    try:
        model.model_validate(obj)
    except ValidationError as exc:
        meta = obj.get("metadata") or {}
        where = f"{model.__name__} {meta.get('namespace') or 'default'}/{meta.get('name')}"
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise RouteConfigError(f"{where}: {detail}") from None


def endpoints_by_name(eps: Sequence[Endpoint]) -> dict[str, Endpoint]:
    return {e.name: e for e in eps}
