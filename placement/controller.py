"""The placement controller: plans gated gangs with `placement.solve` and hands them to Volcano.

Registered on import (`caldera controller` imports this module). Watches keep a `Topology`
(Nodes, HyperNodes, the capacity held by bound, nominated and planned pods) and an index of
pods by gang (`scheduling.k8s.io/group-name`). When a gang's gated pods are complete (their
count reaches the ModelServing's pod count and the PodGroup's minMember), the planner waits a
short window for more, solves every complete gang jointly, and for each placed gang pins its
pods with required node affinity on `kubernetes.io/hostname` (every pod of one task-spec to the
set of nodes planned for that task-spec, see `placement.release`) and removes the gate
`caldera.dev/placement`. Gangs that cannot be placed stay gated; their pods get a
`caldera.dev/Placement` condition and their PodGroup an Event naming the constraint and tier.

Re-planning: a planned pod that Volcano leaves unbound past the deadline, or whose planned node
disappears, is deleted (only pods with an owner, which recreates them gated), so its gang is
planned again. Everything the controller needs after a restart is in the objects (gates,
annotations), so it converges from the watches alone.

Settings come from the environment: CALDERA_PLACEMENT_WINDOW_SECONDS (0.5),
CALDERA_PLACEMENT_DEADLINE_SECONDS (120), CALDERA_PLACEMENT_TIME_LIMIT_SECONDS (2),
CALDERA_PLACEMENT_TICK_SECONDS (5).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge, Histogram

from caldera.kube import api_client
from placement.gangs import gang_from_objects
from placement.model import Gang
from placement.plan import Plan, Reason
from placement.release import (
    CONDITION_TYPE,
    MODELSERVING_NAME_LABEL,
    REASON_ANNOTATION,
    complete_groups,
    expected_pods,
    group_key,
    is_gated,
    overdue_groups,
    planned_unbound,
    release_patch,
    task_spec_hostnames,
)
from placement.snapshot import Snapshot
from placement.solver import SolveOptions, solve
from topology.graph import Topology
from topology.kube import PLANNED_NODE_ANNOTATION, hypernode_from_object, node_from_object, pod_key, pod_usage

log = logging.getLogger("caldera.placement")

PLANS = Counter("caldera_placement_plans_total", "Placement rounds solved, by plan status", ["status"])
GANGS = Counter("caldera_placement_gangs_total", "Gangs planned, by outcome", ["outcome"])
REPLANS = Counter("caldera_placement_replans_total", "Planned pods deleted for re-planning, by cause", ["cause"])
SOLVE_SECONDS = Histogram("caldera_placement_solve_seconds", "Time to solve one placement round",
                          buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
GATED = Gauge("caldera_placement_gated_pods", "Pods waiting behind the caldera.dev/placement gate")

HYPERNODE_API = ("topology.volcano.sh", "v1alpha1", "hypernodes")
PODGROUP_API = ("scheduling.volcano.sh", "v1beta1", "podgroups")
MODELSERVING_API = ("workload.serving.volcano.sh", "v1alpha1", "modelservings")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: expected seconds as a number, got {raw!r}") from exc


@dataclass
class Settings:
    window_seconds: float = field(default_factory=lambda: _env_float("CALDERA_PLACEMENT_WINDOW_SECONDS", 0.5))
    deadline_seconds: float = field(default_factory=lambda: _env_float("CALDERA_PLACEMENT_DEADLINE_SECONDS", 120.0))
    time_limit_seconds: float = field(default_factory=lambda: _env_float("CALDERA_PLACEMENT_TIME_LIMIT_SECONDS", 2.0))
    tick_seconds: float = field(default_factory=lambda: _env_float("CALDERA_PLACEMENT_TICK_SECONDS", 5.0))


@dataclass
class State:
    settings: Settings = field(default_factory=Settings)
    topology: Topology = field(default_factory=Topology)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> pod, pods in a gang or gated
    wake: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None
    api: client.ApiClient | None = None
    unplaceable: set[tuple[str, str]] = field(default_factory=set)

    def kick(self) -> None:
        if self.wake is not None:
            self.wake.set()


STATE = State()


def configure(settings: Settings) -> None:
    """Optional: override the environment-derived settings before the operator starts."""
    STATE.settings = settings


def _api() -> client.ApiClient:
    if STATE.api is None:
        # $KUBECONFIG, in-cluster or ~/.kube/config: the same lookup as `caldera controller`,
        # so this module also runs alone (`kopf run -A -m placement.controller`).
        STATE.api = api_client()
    return STATE.api


# -- watches ---------------------------------------------------------------------------------------
@kopf.on.event("", "v1", "nodes")
async def placement_node_event(**kwargs: Any) -> None:
    event: dict[str, Any] = kwargs["event"]
    obj = event.get("object") or {}
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        return
    if event.get("type") == "DELETED":
        STATE.topology.remove_node(name)
        await _replan_pods_on_missing_node(name)
        STATE.kick()
        return
    old, new = STATE.topology.nodes.get(name), node_from_object(obj)
    STATE.topology.upsert_node(new)
    # A new node, or a known one whose taints, labels, readiness or size changed while a gang waits.
    if old is None or (STATE.unplaceable and old != new):
        STATE.kick()


@kopf.on.event(*HYPERNODE_API)
async def placement_hypernode_event(**kwargs: Any) -> None:
    event: dict[str, Any] = kwargs["event"]
    obj = event.get("object") or {}
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        return
    if event.get("type") == "DELETED":
        STATE.topology.remove_hypernode(name)
    else:
        try:
            STATE.topology.upsert_hypernode(hypernode_from_object(obj))
        except ValueError as exc:
            log.warning("ignoring invalid HyperNode", extra={"hypernode": name, "error": str(exc)})
            return
    STATE.kick()


@kopf.on.event("", "v1", "pods")
async def placement_pod_event(**kwargs: Any) -> None:
    event: dict[str, Any] = kwargs["event"]
    obj = event.get("object") or {}
    if not (obj.get("metadata") or {}).get("name"):
        return
    key = pod_key(obj)
    if event.get("type") == "DELETED":
        STATE.topology.remove_pod(key)
        if STATE.pods.pop(key, None) is not None and STATE.unplaceable:
            STATE.kick()  # capacity may have come back for a waiting gang
        GATED.set(sum(1 for p in STATE.pods.values() if is_gated(p)))
        return
    usage = pod_usage(obj)
    if usage is None:
        if STATE.topology.pod_node(key) is not None:
            STATE.topology.remove_pod(key)
            if STATE.unplaceable:
                STATE.kick()
    else:
        STATE.topology.add_pod(*usage)
    # Track gated pods and every pod of a Volcano gang (completeness counts the gang's live pods).
    if is_gated(obj) or not group_key(obj)[1].startswith("pod:"):
        was_gated = is_gated(STATE.pods.get(key, {}))
        STATE.pods[key] = obj
        if is_gated(obj) and not was_gated:
            STATE.kick()
    GATED.set(sum(1 for p in STATE.pods.values() if is_gated(p)))


# -- the planning loop -----------------------------------------------------------------------------
@kopf.on.startup()
async def start_placement_planner(**_: Any) -> None:
    STATE.wake = asyncio.Event()
    STATE.task = asyncio.create_task(_planner_loop(), name="caldera-placement-planner")


@kopf.on.cleanup()
async def stop_placement_planner(**_: Any) -> None:
    if STATE.task is not None:
        STATE.task.cancel()
        await asyncio.gather(STATE.task, return_exceptions=True)
        STATE.task = None


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout=timeout)
        return True
    except TimeoutError:
        return False


async def _planner_loop() -> None:
    assert STATE.wake is not None
    last: tuple[int, frozenset[str]] | None = None
    while True:
        woken = await _wait(STATE.wake, STATE.settings.tick_seconds)
        # Batch: keep collecting while gangs keep arriving within the window (bounded to 5 windows).
        for _ in range(5):
            if not woken:
                break
            STATE.wake.clear()
            woken = await _wait(STATE.wake, STATE.settings.window_seconds)
        STATE.wake.clear()
        try:
            gated = frozenset(k for k, p in STATE.pods.items() if is_gated(p))
            signature = (STATE.topology.generation, gated)
            if signature != last:  # nothing changed: an unplaceable gang would stay unplaceable
                await plan_round()
                # What this round saw, not what holds after it: a change that arrived while the round
                # awaited its writes (a node's not-ready taint lifted) must still be planned next tick.
                last = signature
            await _replan_overdue()
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop must survive one bad round; the next tick retries
            log.exception("placement round failed")


async def _custom(group_version_plural: tuple[str, str, str], namespace: str, name: str) -> dict[str, Any] | None:
    api = client.CustomObjectsApi(_api())
    try:
        group, version, plural = group_version_plural
        obj: Any = await asyncio.to_thread(api.get_namespaced_custom_object, group, version, namespace, plural, name)
        return dict(obj)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def plan_round() -> Plan | None:
    """Solve every complete gated gang once; returns the plan (None when nothing waits)."""
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for pod in STATE.pods.values():
        by_group[group_key(pod)].append(pod)
    waiting = {k: v for k, v in by_group.items() if any(is_gated(p) for p in v)}
    if not waiting:
        STATE.unplaceable.clear()
        return None
    podgroups: dict[tuple[str, str], dict[str, Any] | None] = {}
    expected: dict[tuple[str, str], int] = {}
    for key, pods in waiting.items():
        namespace, group = key
        if group.startswith("pod:"):
            podgroups[key], expected[key] = None, 1
            continue
        podgroup = await _custom(PODGROUP_API, namespace, group)
        if podgroup is None:
            continue  # the PodGroup (with its topology policies) comes first; wait for it
        ms_name = ((pods[0].get("metadata") or {}).get("labels") or {}).get(MODELSERVING_NAME_LABEL)
        ms = await _custom(MODELSERVING_API, namespace, ms_name) if ms_name else None
        podgroups[key], expected[key] = podgroup, expected_pods(ms, podgroup)
    ready = complete_groups({k: waiting[k] for k in podgroups}, expected)
    if not ready:
        return None
    gangs: list[Gang] = []
    gated_pods: dict[str, dict[str, Any]] = {}
    for key in ready:
        gated = [p for p in waiting[key] if is_gated(p)]
        # Members already bound or planned: the group's topology domain must hold them too.
        placed = [node for p in waiting[key] if not is_gated(p)
                  and (node := (p.get("spec") or {}).get("nodeName")
                       or ((p.get("metadata") or {}).get("annotations") or {}).get(PLANNED_NODE_ANNOTATION))]
        try:
            gangs.append(gang_from_objects(podgroups[key], gated, name=f"{key[0]}/{key[1]}", anchored_nodes=placed,
                                           tier_names=STATE.topology.tier_names()))
        except ValueError as exc:
            log.warning("cannot read gang", extra={"gang": f"{key[0]}/{key[1]}", "error": str(exc)})
            continue
        for pod in gated:
            gated_pods[pod["metadata"]["name"]] = pod
    if not gangs:
        return None
    snapshot = Snapshot.from_topology(STATE.topology)
    options = SolveOptions(time_limit_s=STATE.settings.time_limit_seconds)
    plan = await asyncio.to_thread(solve, snapshot, gangs, options)
    SOLVE_SECONDS.observe(plan.solve_seconds)
    PLANS.labels(plan.status).inc()
    log.info("placement round", extra={"gangs": len(gangs), "placed": len(plan.placed), "status": plan.status,
                                       "gap": round(plan.gap, 5), "seconds": round(plan.solve_seconds, 3)})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    STATE.unplaceable = set()
    for gang in gangs:
        result = plan.results[gang.name]
        namespace, group = gang.name.split("/", 1)
        if result.placed:
            GANGS.labels("placed").inc()
            # One hostname set per task-spec: Volcano checks a task-spec's pods against its first pod.
            hostnames = task_spec_hostnames([gated_pods[p] for p in result.assignments], result.assignments)
            for pod_name, node in result.assignments.items():
                await _release(gated_pods[pod_name], node, now, hostnames.get(pod_name, [node]))
            for rr_name, reason in result.unplaced_role_replicas.items():
                pods = [gated_pods[p.name] for rr in gang.role_replicas if rr.name == rr_name for p in rr.pods]
                await _mark_unplaceable(pods, reason)
        else:
            GANGS.labels("unplaceable").inc()
            STATE.unplaceable.add((namespace, group))
            pods = [gated_pods[p.name] for p in gang.pods]
            await _mark_unplaceable(pods, result.reason or Reason("unknown", "no reason recorded"),
                                    podgroup=podgroups.get((namespace, group)))
    return plan


async def _release(pod: dict[str, Any], node: str, now: str, hostnames: list[str]) -> None:
    core = client.CoreV1Api(_api())
    meta = pod["metadata"]
    try:
        response: Any = await asyncio.to_thread(core.patch_namespaced_pod, meta["name"], meta["namespace"],
                                                release_patch(pod, node, now, hostnames), _preload_content=False)
    except ApiException as exc:
        # 409/422: the pod changed since it was read (or is gone); the next round sees it afresh.
        log.warning("could not release pod", extra={"pod": pod_key(pod), "node": node, "status": exc.status,
                                                    "error": exc.reason})
        return
    # Hold its capacity now, before the watch event comes back.
    key = pod_key(pod)
    STATE.topology.add_pod(key, node, _request_of(pod))
    # Record the released pod unless the watch already delivered a newer copy while the patch was in
    # flight: overwriting that would leave the cache stale (no planned-at, so never re-planned).
    cached = STATE.pods.get(key)
    if cached is None or cached["metadata"].get("resourceVersion") == meta.get("resourceVersion"):
        STATE.pods[key] = json.loads(response.data)


def _request_of(pod: dict[str, Any]) -> dict[str, int]:
    from topology.kube import pod_request

    return pod_request(pod.get("spec") or {})


async def _mark_unplaceable(pods: list[dict[str, Any]], reason: Reason,
                            podgroup: dict[str, Any] | None = None) -> None:
    """Condition on each pod and one Event, written only when the reason changes (quiet at steady state)."""
    text = str(reason)
    core = client.CoreV1Api(_api())
    changed = False
    for pod in pods:
        meta = pod["metadata"]
        if (meta.get("annotations") or {}).get(REASON_ANNOTATION) == text:
            continue
        changed = True
        condition = {"type": CONDITION_TYPE, "status": "False", "reason": f"Unplaceable{reason.constraint[:1].upper()}"
                     f"{reason.constraint[1:]}", "message": text,
                     "lastTransitionTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            await asyncio.to_thread(core.patch_namespaced_pod, meta["name"], meta["namespace"],
                                    {"metadata": {"annotations": {REASON_ANNOTATION: text}}})
            await asyncio.to_thread(core.patch_namespaced_pod_status, meta["name"], meta["namespace"],
                                    {"status": {"conditions": [condition]}})
        except ApiException as exc:
            log.warning("could not mark pod unplaceable", extra={"pod": pod_key(pod), "status": exc.status})
    if not changed or not pods:
        return
    target = podgroup or pods[0]
    meta = target["metadata"]
    event: Any = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": target.get("apiVersion", "v1"), "kind": target.get("kind", "Pod"),
                           "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": "Unplaceable", "message": text, "type": "Warning",
        "source": {"component": "caldera-placement"},
        "firstTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "count": 1,
    }
    try:
        await asyncio.to_thread(core.create_namespaced_event, meta["namespace"], event)
    except ApiException as exc:
        log.warning("could not post event", extra={"object": meta["name"], "status": exc.status})
    log.info("gang unplaceable", extra={"pods": len(pods), "reason": text})


# -- re-planning -----------------------------------------------------------------------------------
async def _delete_for_replan(pod: Mapping[str, Any], cause: str) -> None:
    meta = pod["metadata"]
    if not meta.get("ownerReferences"):
        return  # nobody would recreate it gated; leave it to Volcano
    core = client.CoreV1Api(_api())
    try:
        await asyncio.to_thread(core.delete_namespaced_pod, meta["name"], meta["namespace"],
                                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=meta.get("uid"))))
        REPLANS.labels(cause).inc()
        log.info("re-planning pod", extra={"pod": pod_key(pod), "cause": cause})
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise


async def _replan_pods_on_missing_node(node: str) -> None:
    for pod in list(STATE.pods.values()):
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if planned_unbound(pod) and annotations.get(PLANNED_NODE_ANNOTATION) == node:
            await _delete_for_replan(pod, "node-gone")


async def _replan_overdue() -> None:
    groups = overdue_groups(list(STATE.pods.values()), dt.datetime.now(dt.UTC), STATE.settings.deadline_seconds,
                            set(STATE.topology.nodes))
    for pods in groups.values():
        for pod in pods:
            await _delete_for_replan(pod, "deadline")
