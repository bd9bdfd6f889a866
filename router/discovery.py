"""Cluster mode: watch ModelRoutes, ModelServers and Pods and feed RouterState.

Three informer-style watches (list, then watch from the list's resourceVersion, re-list on
expiry) run in threads with the official client; each change schedules one debounced,
level-triggered rebuild on the event loop from the full caches, so the router's view is
always a pure function of what the API server holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from caldera.kube import api_client
from router.api import GROUP, VERSION
from router.providers.api import CREDENTIAL_LABEL, CREDENTIAL_LABEL_VALUE
from router.providers.provider import compile_providers
from router.providers.status import StatusWriter
from router.state import PodInfo, RouterState

log = logging.getLogger(__name__)

KV_EVENTS_ANNOTATION = "caldera.dev/kv-events"  # e.g. tcp://*:5557 or a port number
KV_REPLAY_ANNOTATION = "caldera.dev/kv-events-replay"


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _resolve(endpoint: str | None, ip: str) -> str | None:
    if not endpoint:
        return None
    if endpoint.isdigit():
        return f"tcp://{ip}:{endpoint}"
    return endpoint.replace("*", ip).replace("0.0.0.0", ip)


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    """What the router needs from a Pod (as a dict): IP, labels, readiness, KV-event endpoints."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ip = status.get("podIP")
    conditions = status.get("conditions") or []
    ready = (status.get("phase") == "Running" and meta.get("deletionTimestamp") is None
             and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions))
    annotations = meta.get("annotations") or {}
    kv = annotations.get(KV_EVENTS_ANNOTATION)
    replay = annotations.get(KV_REPLAY_ANNOTATION)
    bootstrap: int | None = None
    for container in (pod.get("spec") or {}).get("containers") or []:
        args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        if len(args) == 1 or any(" --" in a for a in args):
            args = [t for a in args for t in shlex.split(a)]
        config = _flag(args, "--kv-events-config")
        if config and kv is None:
            with contextlib.suppress(ValueError, AttributeError):
                parsed = json.loads(config)
                if parsed.get("enable_kv_cache_events", True):
                    kv = parsed.get("endpoint") or "tcp://*:5557"
                    replay = replay or parsed.get("replay_endpoint")
        port = _flag(args, "--disaggregation-bootstrap-port")
        if port and port.isdigit():
            bootstrap = int(port)
    return PodInfo(name=meta.get("name", ""), namespace=meta.get("namespace", "default"), ip=ip,
                   labels=meta.get("labels") or {}, ready=ready and bool(ip),
                   kv_events=_resolve(kv, ip) if ip else None, kv_replay=_resolve(replay, ip) if ip else None,
                   bootstrap_port=bootstrap)


class Discovery:
    def __init__(self, state: RouterState, kubeconfig: str | None = None, namespace: str | None = None,
                 on_synced: Callable[[], None] | None = None, debounce_s: float = 0.05) -> None:
        self.state = state
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.on_synced = on_synced
        self.debounce_s = debounce_s
        self.routes: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self._synced: set[str] = set()
        self.required_kinds: set[str] = {"modelroutes", "modelservers", "pods"}  # synced before the first build
        # ExternalModelProviders and the Secrets labelled as their credentials (only those are listed),
        # watched when set before start(); the Helm chart grants that read access only then.
        self.watch_providers = False
        self.providers: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.provider_status: StatusWriter | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        api = api_client(self.kubeconfig)
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        ns = self.namespace

        def lister(plural: str) -> Callable[..., Any]:
            if ns:
                return lambda **kw: custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural, **kw)
            return lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, plural, **kw)

        # Lambdas carry no return-type docstring, so the watch yields plain dicts, as for CRs.
        def pod_lister(**kw: Any) -> Any:
            if ns:
                return core.list_namespaced_pod(ns, **kw)
            return core.list_pod_for_all_namespaces(**kw)

        for kind, fn, cache in (("modelroutes", lister("modelroutes"), self.routes),
                                ("modelservers", lister("modelservers"), self.servers),
                                ("pods", pod_lister, self.pods)):
            t = threading.Thread(target=self._watch, args=(kind, fn, cache), name=f"watch-{kind}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.watch_providers:
            self._watch_providers(custom, core, lister("externalmodelproviders"))

    def _watch_providers(self, custom: client.CustomObjectsApi, core: client.CoreV1Api,
                         provider_lister: Callable[..., Any]) -> None:
        ns, selector = self.namespace, f"{CREDENTIAL_LABEL}={CREDENTIAL_LABEL_VALUE}"

        def secret_lister(**kw: Any) -> Any:
            if ns:
                return core.list_namespaced_secret(ns, label_selector=selector, **kw)
            return core.list_secret_for_all_namespaces(label_selector=selector, **kw)

        self.required_kinds |= {"externalmodelproviders", "secrets"}
        self.provider_status = StatusWriter(custom)
        for kind, fn, cache in (("externalmodelproviders", provider_lister, self.providers),
                                ("secrets", secret_lister, self.secrets)):
            t = threading.Thread(target=self._watch, args=(kind, fn, cache), name=f"watch-{kind}", daemon=True)
            t.start()
            self._threads.append(t)

    async def stop(self) -> None:
        self._stop.set()

    def _watch(self, kind: str, list_fn: Callable[..., Any], cache: dict[str, dict[str, Any]]) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                listed = list_fn()
                if not isinstance(listed, dict):
                    listed = client.ApiClient().sanitize_for_serialization(listed)
                cache.clear()
                for obj in listed.get("items") or []:
                    cache[_key(obj)] = obj
                self._changed(kind, synced=True)
                version = (listed.get("metadata") or {}).get("resourceVersion")
                w = watch.Watch()
                for event in w.stream(list_fn, resource_version=version, timeout_seconds=60,
                                      allow_watch_bookmarks=True):
                    if self._stop.is_set():
                        w.stop()
                        return
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = client.ApiClient().sanitize_for_serialization(obj)
                    etype = event["type"]
                    if etype == "BOOKMARK":
                        continue
                    if etype == "DELETED":
                        cache.pop(_key(obj), None)
                    else:
                        cache[_key(obj)] = obj
                    self._changed(kind)
                backoff = 0.5
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: resourceVersion expired, re-list at once
                    log.warning("watch failed", extra={"kind": kind, "reason": str(exc.reason)})
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # the connection drops; the informer re-lists, as client-go does
                log.warning("watch error", extra={"kind": kind, "reason": repr(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _changed(self, kind: str, synced: bool = False) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._schedule, kind, synced)

    def _schedule(self, kind: str, synced: bool) -> None:
        if synced:
            self._synced.add(kind)
        if self._pending:
            return
        self._pending = True
        assert self._loop is not None
        self._loop.call_later(self.debounce_s, self._rebuild)

    def _rebuild(self) -> None:
        self._pending = False
        if not self.required_kinds <= self._synced:
            return
        started = time.perf_counter()
        objects = list(self.providers.values())
        providers = compile_providers(objects, list(self.secrets.values()))
        self.state.update(list(self.routes.values()), list(self.servers.values()),
                          [pod_info(p) for p in list(self.pods.values())], providers=providers, **self.extra_state())
        if self.provider_status is not None:
            self.provider_status.submit(objects, providers)
        log.debug("routing state rebuilt", extra={"routes": len(self.routes), "servers": len(self.servers),
                                                   "pods": len(self.pods),
                                                   "ms": round((time.perf_counter() - started) * 1e3, 2)})
        if self.on_synced is not None:
            self.on_synced()

    def extra_state(self) -> dict[str, Any]:
        """More keyword arguments for `RouterState.update` (router.gateway adds InferencePools)."""
        return {}


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
