"""`/debug/config_dump/...`: what the router holds, as Kthena's debug server shows it.

- `/debug/config_dump/{modelroutes,modelservers,pods,gateways,httproutes,inferencepools}`
- `/debug/config_dump/namespaces/{namespace}/{kind}/{name}`

ModelRoutes, ModelServers, Gateways, HTTPRoutes and InferencePools are the objects as
received (spec and status), with what the router made of them (associated pods, listeners
open, attachment); pods are the ready endpoints with their engine metrics and the servers and
pools they belong to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from router.gateway.mode import GatewayMode
    from router.server import Router

KINDS = ("modelroutes", "modelservers", "pods", "gateways", "httproutes", "inferencepools")

# kind -> raw objects as received (None: this router does not read that kind)
ObjectSource = Callable[[str], list[Mapping[str, Any]] | None]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data, default=str), content_type="application/json")


def _ident(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name") or ""


class ConfigDump:
    def __init__(self, router: Router, source: ObjectSource, gateway: GatewayMode | None = None) -> None:
        self.router = router
        self.source = source
        self.gateway = gateway

    def install(self, app: web.Application) -> None:
        app.router.add_get("/debug/config_dump/{kind}", self.handle_list)
        app.router.add_get("/debug/config_dump/namespaces/{namespace}/{kind}/{name}", self.handle_get)

    async def handle_list(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in KINDS:
            return _json({"error": f"unknown kind {kind!r}; expected one of {list(KINDS)}"}, 404)
        return _json({kind: self.items(kind)})

    async def handle_get(self, request: web.Request) -> web.Response:
        kind, ns, name = request.match_info["kind"], request.match_info["namespace"], request.match_info["name"]
        if kind not in KINDS:
            return _json({"error": f"unknown kind {kind!r}; expected one of {list(KINDS)}"}, 404)
        for item in self.items(kind):
            if item["namespace"] == ns and item["name"] == name:
                return _json(item)
        return _json({"error": f"{kind} {ns}/{name} not found"}, 404)

    # ---- one list per kind -----------------------------------------------------------------

    def items(self, kind: str) -> list[dict[str, Any]]:
        if kind == "pods":
            return self._pods()
        objects = self.source(kind)
        if objects is None:
            objects = list(self.gateway.raw.get(kind, [])) if self.gateway is not None else []
        out: list[dict[str, Any]] = []
        for obj in objects:
            ns, name = _ident(obj)
            item: dict[str, Any] = {"name": name, "namespace": ns, "spec": obj.get("spec") or {}}
            if obj.get("status"):
                item["status"] = obj["status"]
            extra = getattr(self, f"_{kind}_extra")(ns, name, obj)
            item.update(extra)
            out.append(item)
        return sorted(out, key=lambda i: (i["namespace"], i["name"]))

    def _modelroutes_extra(self, ns: str, name: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        extra: dict[str, Any] = {"routeInfo": {"model": spec.get("modelName") or "",
                                               "loras": list(spec.get("loraAdapters") or [])}}
        if self.gateway is not None:
            extra["parentRefs"] = [vars(p) for p in self.gateway.table.modelroute_parents.get(f"{ns}/{name}", ())]
        return extra

    def _modelservers_extra(self, ns: str, name: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        state = self.router.state
        members = [state.endpoints[n] for n in state.members.get(f"{ns}/{name}", ()) if n in state.endpoints]
        return {"associatedPods": [e.name for e in members],
                "decodePods": [e.name for e in members if e.role == "decode"],
                "prefillPods": [e.name for e in members if e.role == "prefill"]}

    def _gateways_extra(self, ns: str, name: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        if self.gateway is None:
            return {"served": False}
        gw = self.gateway.table.gateways.get(f"{ns}/{name}")
        if gw is None:
            return {"served": False}
        lm = self.gateway.listeners
        main = self.router.config.port
        return {"served": True, "listeners": [
            {"name": listener.name, "port": listener.port, "hostname": listener.hostname,
             "open": listener.port == main or listener.port in lm.sites, "error": lm.errors.get(listener.port)}
            for listener in gw.listeners], "unsupportedListeners": list(gw.unsupported)}

    def _httproutes_extra(self, ns: str, name: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        if self.gateway is None:
            return {"attachedListeners": []}
        return {"attachedListeners": self.gateway.table.attached_routes.get(f"{ns}/{name}", [])}

    def _inferencepools_extra(self, ns: str, name: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        state = self.router.state
        members = state.members.get(f"InferencePool/{ns}/{name}", [])
        return {"endpoints": [{"name": n, "address": state.endpoints[n].address}
                              for n in members if n in state.endpoints]}

    def _pods(self) -> list[dict[str, Any]]:
        state = self.router.state
        servers_of: dict[str, list[str]] = {}
        for server, names in state.members.items():
            for n in names:
                servers_of.setdefault(n, []).append(server)
        pods: dict[str, dict[str, Any]] = {}
        for ep in state.endpoints.values():
            pod = ep.name.split(":", 1)[0]
            ns, _, name = pod.partition("/")
            snap = ep.snapshot()
            item = pods.setdefault(pod, {"name": name, "namespace": ns, "engine": ep.engine, "endpoints": [],
                                         "modelServers": [], "inferencePools": [],
                                         "models": sorted(ep.loaded_loras)})
            item["endpoints"].append({"address": ep.address, "healthy": ep.healthy, "metrics": snap["metrics"],
                                      "inflightRequests": ep.inflight_requests})
            for server in servers_of.get(ep.name, []):
                bucket = "inferencePools" if server.startswith("InferencePool/") else "modelServers"
                short = server.removeprefix("InferencePool/")
                if short not in item[bucket]:
                    item[bucket].append(short)
        return sorted(pods.values(), key=lambda i: (i["namespace"], i["name"]))


def static_source(router: Router) -> ObjectSource:
    cfg = router.config

    def objects(kind: str) -> list[Mapping[str, Any]] | None:
        if kind == "modelroutes":
            return list(cfg.model_routes)
        if kind == "modelservers":
            return list(cfg.model_servers)
        return None  # Gateway objects: from GatewayMode.raw when enabled

    return objects


def discovery_source(discovery: Any) -> ObjectSource:
    """Objects from a `router.discovery.Discovery` (and `GatewayDiscovery`) informer cache."""

    def objects(kind: str) -> list[Mapping[str, Any]] | None:
        if kind == "modelroutes":
            return list(discovery.routes.values())
        if kind == "modelservers":
            return list(discovery.servers.values())
        return None

    return objects
