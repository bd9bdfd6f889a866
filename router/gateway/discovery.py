"""Cluster mode with Gateway API: also watch Gateway, HTTPRoute and InferencePool.

The extra watches are informers like the base ones (router.discovery) and feed the same
debounced, level-triggered rebuild, so the order in which objects arrive (an HTTPRoute before
its Gateway, a router restarted with everything in place) never matters. A kind whose CRD is
not installed is logged once, counts as synced and empty, and is probed again periodically:
the router keeps serving ModelRoutes and picks the CRD up when it appears.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.kube import api_client
from router.discovery import Discovery
from router.gateway.defaults import ensure_defaults
from router.gateway.mode import GatewayMode
from router.gateway.objects import GATEWAY_GROUP, GATEWAY_VERSION, INFERENCE_GROUP, INFERENCE_VERSION
from router.gateway.status import StatusWriter
from router.gateway.tls import TLS_SECRET_TYPE
from router.state import RouterState

log = logging.getLogger(__name__)

CRD_PROBE_INTERVAL_S = 15.0
TLS_FIELD_SELECTOR = f"type={TLS_SECRET_TYPE}"

# kind (plural) -> (group, version, CRD name)
KINDS: dict[str, tuple[str, str, str]] = {
    "gateways": (GATEWAY_GROUP, GATEWAY_VERSION, f"gateways.{GATEWAY_GROUP}"),
    "httproutes": (GATEWAY_GROUP, GATEWAY_VERSION, f"httproutes.{GATEWAY_GROUP}"),
    "inferencepools": (INFERENCE_GROUP, INFERENCE_VERSION, f"inferencepools.{INFERENCE_GROUP}"),
}


class GatewayDiscovery(Discovery):
    def __init__(self, state: RouterState, mode: GatewayMode, kubeconfig: str | None = None,
                 namespace: str | None = None, on_synced: Callable[[], None] | None = None,
                 debounce_s: float = 0.05, crds: Mapping[str, tuple[str, str, str]] = KINDS) -> None:
        # Ready (on_synced) only once the listener ports of the synced Gateways are open too.
        super().__init__(state, kubeconfig=kubeconfig, namespace=namespace, on_synced=self._after_rebuild,
                         debounce_s=debounce_s)
        self._on_ready = on_synced
        self.mode = mode
        self.crds = crds  # kind -> (group, version, CRD name)
        self.kinds = ["gateways"]
        if mode.settings.enable_inference_extension:
            self.kinds += ["httproutes", "inferencepools"]
        self.caches: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in self.kinds}
        self.required_kinds |= set(self.kinds)
        # HTTPS listeners' certificates: Secrets of type kubernetes.io/tls only (a field selector).
        self.tls_secrets: dict[str, dict[str, Any]] | None = {} if mode.settings.tls_secrets else None
        if self.tls_secrets is not None:
            self.required_kinds.add("tlssecrets")
        # Service backendRefs of HTTPRoutes: Services (ports) and their EndpointSlices (ready addresses).
        self.services: dict[str, dict[str, Any]] = {}
        self.endpoint_slices: dict[str, dict[str, Any]] = {}
        if mode.settings.enable_inference_extension:
            self.required_kinds |= {"services", "endpointslices"}
        self.status_writer: StatusWriter | None = None
        self._pending_ready: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        api = api_client(self.kubeconfig)
        if self.mode.settings.default_gateway.create:
            await asyncio.to_thread(ensure_defaults, api, self.mode.settings, self.namespace,
                                    self.mode.router.config.port)
        await super().start()
        if self.mode.settings.write_status:
            self.status_writer = StatusWriter(api, self.mode.status_snapshot)
            self.mode.on_listeners_changed = self.status_writer.submit
            self.status_writer.start()
        custom = client.CustomObjectsApi(api)
        ns = self.namespace
        if self.tls_secrets is not None:
            core = client.CoreV1Api(api)

            def secret_lister(**kw: Any) -> Any:
                if ns:
                    return core.list_namespaced_secret(ns, field_selector=TLS_FIELD_SELECTOR, **kw)
                return core.list_secret_for_all_namespaces(field_selector=TLS_FIELD_SELECTOR, **kw)

            t = threading.Thread(target=self._watch_optional,
                                 args=("tlssecrets", "secrets", secret_lister, self.tls_secrets),
                                 name="watch-tlssecrets", daemon=True)
            t.start()
            self._threads.append(t)
        if self.mode.settings.enable_inference_extension:
            self._watch_services(api)
        for kind in self.kinds:
            group, version, crd = self.crds[kind]

            def lister(group: str = group, version: str = version, plural: str = kind) -> Callable[..., Any]:
                if ns:
                    return lambda **kw: custom.list_namespaced_custom_object(group, version, ns, plural, **kw)
                return lambda **kw: custom.list_cluster_custom_object(group, version, plural, **kw)

            t = threading.Thread(target=self._watch_optional, args=(kind, crd, lister(), self.caches[kind]),
                                 name=f"watch-{kind}", daemon=True)
            t.start()
            self._threads.append(t)

    def _watch_services(self, api: client.ApiClient) -> None:
        core, disco, ns = client.CoreV1Api(api), client.DiscoveryV1Api(api), self.namespace

        def services(**kw: Any) -> Any:
            return core.list_namespaced_service(ns, **kw) if ns else core.list_service_for_all_namespaces(**kw)

        def endpoint_slices(**kw: Any) -> Any:
            if ns:
                return disco.list_namespaced_endpoint_slice(ns, **kw)
            return disco.list_endpoint_slice_for_all_namespaces(**kw)

        for kind, resource, fn, cache in (
                ("services", "services", services, self.services),
                ("endpointslices", "endpointslices.discovery.k8s.io", endpoint_slices, self.endpoint_slices)):
            t = threading.Thread(target=self._watch_optional, args=(kind, resource, fn, cache), name=f"watch-{kind}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    async def stop(self) -> None:
        await super().stop()
        if self.status_writer is not None:
            self.status_writer.stop()

    def _watch_optional(self, kind: str, crd: str, list_fn: Callable[..., Any],
                        cache: dict[str, dict[str, Any]]) -> None:
        """Watch `kind` once its CRD is served and readable; until then it is empty (logged once).
        Also for the core kinds Gateway mode adds (TLS Secrets, Services, EndpointSlices): an RBAC
        that does not grant them (an older chart, Kthena's manifests) must not keep the router
        from becoming ready."""
        while not self._stop.is_set():
            try:
                list_fn(limit=1)
            except ApiException as exc:
                if exc.status not in (403, 404):
                    log.warning("cannot list Gateway API objects", extra={"kind": kind, "reason": str(exc.reason)})
                    self._stop.wait(2.0)
                    continue
                # Absent CRD or missing RBAC: serve without this kind rather than not at all.
                if kind not in self.mode.absent_kinds:
                    self.mode.absent_kinds.add(kind)
                    why = (f"CRD {crd} is not installed" if exc.status == 404
                           else f"the router may not list {crd} (RBAC: get/list/watch)")
                    log.warning(f"{why}: no {kind} until it can; ModelRoutes are served as usual",
                                extra={"kind": kind, "crd": crd, "status": exc.status})
                cache.clear()
                self._changed(kind, synced=True)
                self._stop.wait(CRD_PROBE_INTERVAL_S)
                continue
            except Exception as exc:  # the API server is unreachable: retry, as the base informers do
                log.warning("watch error", extra={"kind": kind, "reason": repr(exc)})
                self._stop.wait(2.0)
                continue
            if kind in self.mode.absent_kinds:
                self.mode.absent_kinds.discard(kind)
                log.info(f"{crd} can be listed: watching {kind}", extra={"kind": kind})
            self._watch(kind, list_fn, cache)  # returns only on stop

    def _after_rebuild(self) -> None:
        task = asyncio.get_running_loop().create_task(self._ready_when_listening())
        self._pending_ready.add(task)
        task.add_done_callback(self._pending_ready.discard)

    async def _ready_when_listening(self) -> None:
        await self.mode.settle()
        if self._on_ready is not None:
            self._on_ready()

    def extra_state(self) -> dict[str, Any]:
        c = self.caches
        pools = self.mode.update(list(self.routes.values()), list(c["gateways"].values()),
                                 list(c.get("httproutes", {}).values()), list(c.get("inferencepools", {}).values()),
                                 None if self.tls_secrets is None or "tlssecrets" in self.mode.absent_kinds
                                 else list(self.tls_secrets.values()),
                                 None if "services" in self.mode.absent_kinds else list(self.services.values()),
                                 list(self.endpoint_slices.values()))
        if self.status_writer is not None:
            self.status_writer.submit()
        return {"pools": pools, "extra_pods": self.mode.table.services.pods}
