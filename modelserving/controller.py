"""The kopf shell of the ModelServing controller: watch, plan, write.

Importing this module registers the handlers. One daemon per ModelServing runs the
reconcile loop: it wakes on any change of the ModelServing or of its pods, Services,
PodGroups or ControllerRevisions (kopf watch streams feed `cache`), on a requeue the plan
asked for, or on a periodic resync; it plans with the pure core (`modelserving.plan`) and
writes only the difference. kopf's peering pauses the daemons of a standby replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelserving import labels as L
from modelserving.api import ModelServing as ModelServingModel
from modelserving.cache import KINDS, Cache, Key
from modelserving.desired import PodOptions
from modelserving.executor import MERGE_PATCH, Kube, execute, selector
from modelserving.lws import (
    LWS_GROUP,
    LWS_PLURAL,
    LWS_VERSION,
    lws_status,
    modelserving_from_lws,
    spec_differs,
)
from modelserving.metrics import MODELSERVINGS, QUEUE_DEPTH, RECONCILE_ERRORS, RECONCILE_SECONDS, RECONCILES
from modelserving.naming import role_id
from modelserving.observed import Observed
from modelserving.plan import Event, Plan, plan
from modelserving.spec import ModelServing, SpecError, parse_modelserving

log = logging.getLogger("caldera.modelserving")


@dataclass
class Settings:
    placement: str = "volcano"  # "caldera": pods carry the caldera.dev/placement scheduling gate
    resync_seconds: float = 300.0
    error_backoff_seconds: float = 2.0
    error_backoff_max_seconds: float = 60.0


@dataclass
class State:
    settings: Settings = field(default_factory=Settings)
    cache: Cache = field(default_factory=Cache)
    kube: Kube | None = None
    podgroups: bool = True
    subgroups: bool = True
    ready: bool = False

    def options(self) -> PodOptions:
        return PodOptions(podgroups=self.podgroups, subgroups=self.subgroups,
                          placement_gate=self.settings.placement == "caldera")


STATE = State()


def configure(settings: Settings, kube: Kube) -> None:
    """Called by `caldera controller` before the operator starts."""
    STATE.settings = settings
    STATE.kube = kube


def _kube() -> Kube:
    if STATE.kube is None:
        raise RuntimeError("modelserving.controller.configure() was not called")
    return STATE.kube


@kopf.on.startup()
async def detect_podgroups(logger: kopf.Logger, **_: Any) -> None:
    STATE.podgroups, STATE.subgroups = await asyncio.to_thread(_kube().podgroup_support)
    logger.info(f"PodGroup CRD: {STATE.podgroups}, subGroupPolicy: {STATE.subgroups}, "
                f"placement: {STATE.settings.placement}")
    STATE.ready = True


# -- watch streams feed the cache ----------------------------------------------------------------
def _observe(kind: str, event: dict[str, Any]) -> None:
    obj = event.get("object") or {}
    key = STATE.cache.observe(kind, str(event.get("type")), obj)
    # Children of a ModelServing that is gone (e.g. pods terminating after it) wake nobody.
    if key is not None and key in STATE.cache.modelservings:
        STATE.cache.kick(key)
        QUEUE_DEPTH.set(STATE.cache.queue_depth())


_CHILD = {"labels": {L.NAME_LABEL: kopf.PRESENT}}


@kopf.on.event("", "v1", "pods", **_CHILD)  # type: ignore[arg-type]
def pod_event(**kwargs: Any) -> None:
    _observe("Pod", kwargs["event"])


@kopf.on.event("", "v1", "services", **_CHILD)  # type: ignore[arg-type]
def service_event(**kwargs: Any) -> None:
    _observe("Service", kwargs["event"])


@kopf.on.event(L.PODGROUP_GROUP, L.PODGROUP_VERSION, L.PODGROUP_PLURAL, **_CHILD)  # type: ignore[arg-type]
def podgroup_event(**kwargs: Any) -> None:
    _observe("PodGroup", kwargs["event"])


@kopf.on.event("apps", "v1", "controllerrevisions", **_CHILD)  # type: ignore[arg-type]
def revision_event(**kwargs: Any) -> None:
    _observe("ControllerRevision", kwargs["event"])


@kopf.on.event(L.GROUP, L.VERSION, L.PLURAL)
def modelserving_event(**kwargs: Any) -> None:
    event, namespace, name = kwargs["event"], kwargs.get("namespace"), kwargs.get("name")
    key = (namespace or "default", name or "")
    if event.get("type") == "DELETED":
        STATE.cache.forget(key)
    else:
        STATE.cache.modelservings[key] = event.get("object") or {}
        STATE.cache.kick(key)
    MODELSERVINGS.set(len(STATE.cache.modelservings))
    QUEUE_DEPTH.set(STATE.cache.queue_depth())


# -- the reconcile loop ---------------------------------------------------------------------------
async def seed(key: Key) -> None:
    """LIST everything of this ModelServing: the cache is complete before the first plan."""
    kube = _kube()
    sel = selector({L.NAME_LABEL: key[1]})
    for kind in KINDS:
        if kind == "PodGroup" and not STATE.podgroups:
            continue
        items = await asyncio.to_thread(kube.list, kind, key[0], sel)
        STATE.cache.replace(key, kind, items)
    STATE.cache.entry(key).seeded = True


def _role_events(key: Key, ms: ModelServing, obs: Observed) -> list[Event]:
    """RoleRunning when every pod of a role replica turns Running and Ready (not re-sent after a restart)."""
    entry = STATE.cache.entry(key)
    running: set[str] = set()
    for group in obs.groups(ms.name).values():
        for role_name, replicas in group.roles.items():
            role = ms.template.role(role_name)
            if role is None:
                continue
            for rr in replicas.values():
                if len(rr.pods) == role.pods_per_replica and all(p.running_ready for p in rr.pods.values()):
                    running.add(f"{group.name}/{role_id(role_name, rr.index)}")
    previous, entry.running_roles = entry.running_roles, running
    if previous is None:
        return []
    return [Event("RoleRunning", f"Role {r.split('/')[1]} in ServingGroup {r.split('/')[0]} is now Running")
            for r in sorted(running - previous)]


async def reconcile(key: Key, logger: logging.Logger | kopf.Logger) -> Plan | None:
    body = STATE.cache.modelservings.get(key)
    if not body or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    try:
        ModelServingModel.model_validate(body)
        ms = parse_modelserving(body)
    except (ValidationError, SpecError) as exc:
        RECONCILES.labels("invalid").inc()
        kopf.warn(kopf.Body(cast(Any, body)), reason="InvalidSpec", message=str(exc)[:1000])
        logger.warning(f"invalid ModelServing {key[0]}/{key[1]}: {exc}")
        return None
    obs = STATE.cache.observed(key, ms.uid)
    # Planning is pure and CPU-bound: keep the event loop (watch streams, probes) responsive.
    result = await asyncio.to_thread(plan, ms, obs, STATE.options(), time.time())
    if result.notes:
        log.info("plan", extra={"modelserving": f"{key[0]}/{key[1]}", "notes": result.notes,
                                "writes": result.writes})
    await execute(_kube(), STATE.cache, key, result)
    if result.status_patch:
        updated = await asyncio.to_thread(_kube().patch_status, key[0], key[1], result.status_patch)
        if updated:
            STATE.cache.modelservings[key] = updated
            owner = next((o for o in (body.get("metadata") or {}).get("ownerReferences") or []
                          if o.get("kind") == "LeaderWorkerSet"), None)
            if owner is not None and {"replicas", "availableReplicas"} & set(result.status_patch):
                kube = _kube()
                await asyncio.to_thread(
                    kube.request, "patch",
                    kube.custom(LWS_GROUP, LWS_VERSION, LWS_PLURAL, key[0], owner["name"], "status"),
                    body={"status": lws_status(updated)}, content_type=MERGE_PATCH, resource="leaderworkersets/status")
    for ev in [*result.events, *_role_events(key, ms, STATE.cache.observed(key, ms.uid))]:
        kopf.event(kopf.Body(cast(Any, body)), type=ev.type, reason=ev.reason, message=ev.message)
    return result


@kopf.daemon(L.GROUP, L.VERSION, L.PLURAL, cancellation_timeout=10.0)
async def modelserving_daemon(namespace: str | None, name: str, stopped: kopf.DaemonStopped,
                              logger: kopf.Logger, **_: Any) -> None:
    key = (namespace or "default", name)
    trigger = STATE.cache.trigger(key)
    backoff = 0.0
    last_seed = 0.0
    wait: float | None = 0.0
    while not stopped:
        if wait is None or wait > 0:
            timeout = STATE.settings.resync_seconds if wait is None else min(wait, STATE.settings.resync_seconds)
            waiter = asyncio.ensure_future(trigger.wait())
            stopper = asyncio.ensure_future(stopped.wait())
            await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if stopped:
                break
        trigger.clear()
        QUEUE_DEPTH.set(STATE.cache.queue_depth())
        started = time.perf_counter()
        try:
            if not STATE.cache.entry(key).seeded or time.monotonic() - last_seed > STATE.settings.resync_seconds:
                await seed(key)
                last_seed = time.monotonic()
            result = await reconcile(key, logger)
            backoff = 0.0
            RECONCILES.labels("ok" if result is None or not result.writes else "wrote").inc()
            wait = result.requeue_after if result is not None else None
        except Exception as exc:  # kopf would kill the daemon; we retry with back-off instead
            RECONCILE_ERRORS.labels(type(exc).__name__).inc()
            RECONCILES.labels("error").inc()
            backoff = min(max(backoff * 2, STATE.settings.error_backoff_seconds),
                          STATE.settings.error_backoff_max_seconds)
            log.warning(f"reconcile of {namespace}/{name} failed ({exc!r}); retrying in {backoff:.0f}s",
                        exc_info=not isinstance(exc, ApiException))
            # The cache may have missed something: read the truth again before the retry.
            STATE.cache.entry(key).seeded = False
            wait = backoff
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)


# -- LeaderWorkerSet compatibility (served only when the LWS CRD is installed) -----------------
def serve_leaderworkersets() -> None:
    """Register the LeaderWorkerSet handler (`caldera controller --leader-worker-set`, the default).

    Not on import: kopf watches every registered resource whose CRD exists, and a controller
    without the grant (the chart's `controller.leaderWorkerSet.enabled: false`) must not even
    list LeaderWorkerSets when someone else installs their CRD."""
    kopf.on.event(LWS_GROUP, LWS_VERSION, LWS_PLURAL)(leaderworkerset_event)


def leaderworkerset_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    if event.get("type") == "DELETED":
        return  # the ModelServing it owns is garbage-collected
    lws = event.get("object") or {}
    desired = modelserving_from_lws(lws)
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    current = STATE.cache.modelservings.get((namespace, name))
    kube = _kube()
    if current is None:
        try:
            current = kube.get("ModelServing", namespace, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            kube.create("ModelServing", namespace, desired)
            return
    if spec_differs(current, desired):
        kube.patch("ModelServing", namespace, name, {"spec": desired["spec"]})
    status = lws_status(current)
    if any((lws.get("status") or {}).get(k) != v for k, v in status.items()):
        kube.request("patch", kube.custom(LWS_GROUP, LWS_VERSION, LWS_PLURAL, namespace, name, "status"),
                     body={"status": status}, content_type=MERGE_PATCH, resource="leaderworkersets/status")
