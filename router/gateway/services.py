"""Service backendRefs of HTTPRoute rules: a Service port served by its ready EndpointSlice
endpoints.

A backendRef `{kind: Service, name, port}` becomes a `ServiceServer` (a router server keyed
`Service/<ns>/<name>:<port>`) whose endpoints are the ready addresses of the Service's
EndpointSlices (label `kubernetes.io/service-name`) on the slice port named as the Service
port. They are handed to `RouterState.update` as pods of their own (one per address, labelled
for that server only), so the router's endpoint picking, metrics and failover apply as for
InferencePools. Pure: the Services and EndpointSlices are dicts as the API server returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from router.gateway.objects import ENGINE_ANNOTATION, BackendRef
from router.routing import Server
from router.state import PodInfo

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MEMBER_LABEL = "caldera.dev/gateway-service"  # on the router's own endpoint records, never on pods


@dataclass(frozen=True)
class ServiceServer(Server):
    service_port: int = 0

    @property
    def key(self) -> str:
        return service_key(self.namespace, self.name, self.service_port)


def service_key(namespace: str, name: str, port: int | None) -> str:
    return f"Service/{namespace}/{name}:{port}"


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


@dataclass
class ServiceBackends:
    servers: dict[str, ServiceServer]
    pods: list[PodInfo]
    errors: dict[str, tuple[str, str]]  # backend key -> (ResolvedRefs reason, message)


def resolve_services(refs: Iterable[tuple[str, BackendRef]], services: Iterable[Mapping[str, Any]] | None,
                     slices: Iterable[Mapping[str, Any]] | None) -> ServiceBackends:
    """The servers and endpoint records of the Service backendRefs among `refs` ((route namespace,
    backendRef) pairs). A reference to another namespace would need a ReferenceGrant, which the
    router does not read: it is refused (RefNotPermitted)."""
    by_key = {_key(s): s for s in services or ()}
    slices_of: dict[str, list[Mapping[str, Any]]] = {}
    for sl in slices or ():
        meta = sl.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner:
            slices_of.setdefault(f"{meta.get('namespace') or 'default'}/{owner}", []).append(sl)
    out = ServiceBackends(servers={}, pods=[], errors={})
    for route_ns, ref in refs:
        if ref.kind != "Service":
            continue
        key = service_key(ref.namespace, ref.name, ref.port)
        if ref.namespace != route_ns:
            out.errors.setdefault(key, ("RefNotPermitted", f"Service {ref.namespace}/{ref.name} is in another "
                                        "namespace than the route (ReferenceGrants are not supported)"))
            continue
        if key in out.servers or key in out.errors:
            continue
        if services is None:
            out.errors[key] = ("BackendNotFound", "the router cannot list Services (RBAC: list/watch on services)")
            continue
        svc = by_key.get(f"{ref.namespace}/{ref.name}")
        if svc is None:
            out.errors[key] = ("BackendNotFound", f"Service {ref.namespace}/{ref.name} not found")
            continue
        port_spec = next((p for p in (svc.get("spec") or {}).get("ports") or () if p.get("port") == ref.port), None)
        if port_spec is None:
            out.errors[key] = ("BackendNotFound", f"Service {ref.namespace}/{ref.name} has no port {ref.port}")
            continue
        engine = ((svc.get("metadata") or {}).get("annotations") or {}).get(ENGINE_ANNOTATION) or "vLLM"
        if engine not in ("vLLM", "SGLang"):
            engine = "vLLM"
        member = f"{ref.namespace}.{ref.name}.{ref.port}"
        out.servers[key] = ServiceServer(namespace=ref.namespace, name=ref.name, model=None, engine=engine,
                                         match_labels=((MEMBER_LABEL, member),), pd_group=None, port=None,
                                         kv_connector=None, service_port=ref.port or 0)
        port_name = port_spec.get("name") or ""
        for sl in slices_of.get(f"{ref.namespace}/{ref.name}", ()):
            target = next((p.get("port") for p in sl.get("ports") or ()
                           if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == "TCP"), None)
            if not isinstance(target, int) or sl.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
                continue
            for ep in sl.get("endpoints") or ():
                ready = (ep.get("conditions") or {}).get("ready")
                addresses = ep.get("addresses") or ()
                if ready is False or not addresses:  # unset means ready (EndpointSlice API)
                    continue
                ip = addresses[0]
                address = f"[{ip}]:{target}" if ":" in ip else f"{ip}:{target}"
                who = (ep.get("targetRef") or {}).get("name") or ip
                out.pods.append(PodInfo(name=f"{who}@{ref.name}:{ref.port}", namespace=ref.namespace, ip=None,
                                        labels={MEMBER_LABEL: member}, address=address))
    return out
