"""A Volcano scheduler extender that follows Caldera's plan (for clusters that do not use gates).

Volcano's `extender` plugin POSTs JSON to `<urlPrefix>/<verb>` with its internal TaskInfo /
NodeInfo / JobInfo structs (Go field names; scalar resources in milli-units, so 8 GPUs arrive
as 8000). On `onSessionOpen` the extender plans every job with pending tasks jointly on the
session's idle capacity and the cluster's HyperNodes; then

- `jobEnqueueable` admits a job only if a topology-feasible plan places it (Permit 1 / Reject -1),
- `predicate` passes a task only on its planned node (code 2, Unschedulable, elsewhere),
- `prioritize` scores the planned node 100 and every other node 0,
- `jobReady`, `allocateFunc`, `deallocateFunc`, `onSessionClose` acknowledge.

Tasks of jobs the extender knows nothing about are never blocked. The pure `ExtenderCore`
holds the logic; `make_app` wraps it in aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from placement.gangs import gang_from_objects
from placement.model import Gang
from placement.plan import Plan, Reason
from placement.reasons import explain
from placement.snapshot import Snapshot
from placement.solver import SolveOptions, solve
from topology.graph import HyperNodeSpec, NodeInfo, Topology
from topology.kube import node_from_object
from topology.resources import CPU, MEMORY, Resources, from_milli

log = logging.getLogger("caldera.placement.extender")

PERMIT, ABSTAIN, REJECT = 1, 0, -1
SUCCESS, UNSCHEDULABLE = 0, 2
PENDING = 1  # TaskStatus bit of a task waiting for a node
MAX_SCORE = 100.0


def resources_from_volcano(raw: Mapping[str, Any] | None) -> Resources:
    """Volcano's `Resource` {MilliCPU, Memory, ScalarResources (milli)} in Caldera base units."""
    if not raw:
        return {}
    out: Resources = {CPU: int(raw.get("MilliCPU") or 0), MEMORY: int(raw.get("Memory") or 0)}
    for name, milli in (raw.get("ScalarResources") or {}).items():
        out[name] = from_milli(name, float(milli))
    return out


def task_key(task: Mapping[str, Any]) -> str:
    pod_meta = (task.get("Pod") or {}).get("metadata") or {}
    return f"{task.get('Namespace') or pod_meta.get('namespace')}/{task.get('Name') or pod_meta.get('name')}"


def node_from_volcano(info: Mapping[str, Any]) -> tuple[NodeInfo, Resources]:
    """A NodeInfo payload as (node, idle capacity)."""
    node_obj = info.get("Node") or {}
    node = node_from_object(node_obj) if node_obj else NodeInfo(name=str(info.get("Name")), allocatable={})
    allocatable = resources_from_volcano(info.get("Allocatable"))
    if allocatable:
        node = NodeInfo(name=node.name, allocatable={**node.allocatable, **allocatable}, labels=node.labels,
                        taints=node.taints, schedulable=node.schedulable)
    idle = resources_from_volcano(info.get("Idle"))
    free = {**node.allocatable, **idle} if idle else dict(node.allocatable)
    return node, free


def pending_pods(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(t["Pod"]) for t in (job.get("Tasks") or {}).values()
            if t.get("Pod") and int(t.get("Status") or 0) == PENDING]


def gang_from_job(job: Mapping[str, Any], tier_names: Mapping[str, int] | None = None) -> Gang | None:
    pods = pending_pods(job)
    if not pods:
        return None
    return gang_from_objects(job.get("PodGroup"), pods, name=str(job.get("UID")), tier_names=tier_names)


@dataclass
class ExtenderCore:
    """Session state: the snapshot and the plan Volcano's later calls are answered from."""

    hypernodes: Callable[[], Sequence[HyperNodeSpec]]
    options: SolveOptions = field(default_factory=lambda: SolveOptions(time_limit_s=0.5))
    snapshot: Snapshot | None = None
    plan: Plan | None = None
    planned: dict[str, str] = field(default_factory=dict)  # task key -> node
    managed: set[str] = field(default_factory=set)  # task keys of planned jobs
    reasons: dict[str, Reason] = field(default_factory=dict)  # job UID -> why not placed
    # Every placement decided since start (task key -> node) and the latest reason per unplaced
    # job, bounded, for /debug/plans: what the extender told Volcano, after the session is gone.
    history: dict[str, str] = field(default_factory=dict)
    unplaceable: dict[str, str] = field(default_factory=dict)
    history_limit: int = 10_000
    tier_names: dict[str, int] = field(default_factory=dict)

    def session_open(self, request: Mapping[str, Any]) -> None:
        started = time.perf_counter()
        nodes: list[NodeInfo] = []
        free: dict[str, Resources] = {}
        for info in (request.get("Nodes") or {}).values():
            node, idle = node_from_volcano(info)
            nodes.append(node)
            free[node.name] = idle
        topo = Topology.build(nodes, self.hypernodes())
        base = Snapshot.from_topology(topo)
        self.snapshot = Snapshot(base.nodes, free, base.parent, base.tier, base.leaf_of, base.root)
        gangs = []
        self.managed = set()
        self.tier_names = topo.tier_names()
        for job in (request.get("Jobs") or {}).values():
            try:
                gang = gang_from_job(job, self.tier_names)
            except ValueError as exc:
                log.warning("skipping job", extra={"job": job.get("UID"), "error": str(exc)})
                continue
            if gang is not None:
                gangs.append(gang)
                self.managed.update(task_key(t) for t in (job.get("Tasks") or {}).values())
        self.plan = solve(self.snapshot, gangs, self.options) if gangs else None
        self.planned = {}
        self.reasons = {}
        if self.plan is not None:
            for gang in gangs:
                result = self.plan.results[gang.name]
                namespace = gang.name.split("/", 1)[0]
                for pod, target in result.assignments.items():
                    self.planned[f"{namespace}/{pod}"] = target
                if not result.placed and result.reason is not None:
                    self.reasons[gang.name] = result.reason
        self._remember()
        log.info("session planned", extra={"jobs": len(gangs), "placed": len(self.plan.placed) if self.plan else 0,
                                           "seconds": round(time.perf_counter() - started, 3)})

    def _remember(self) -> None:
        self.history.update(self.planned)
        self.unplaceable.update({job: str(reason) for job, reason in self.reasons.items()})
        for placed in self.plan.placed if self.plan else []:
            self.unplaceable.pop(placed, None)
        while len(self.history) > self.history_limit:
            self.history.pop(next(iter(self.history)))

    def session_close(self) -> None:
        self.plan, self.planned, self.managed, self.reasons = None, {}, set(), {}

    def predicate(self, task: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
        key = task_key(task)
        name = str(node.get("Name") or ((node.get("Node") or {}).get("metadata") or {}).get("name"))
        if key not in self.managed:
            return {"status": "", "code": SUCCESS}
        target = self.planned.get(key)
        if target == name:
            return {"status": "", "code": SUCCESS}
        if target is None:
            reason = self.reasons.get(str(task.get("Job")))
            return {"status": f"caldera: job not placeable: {reason}" if reason else "caldera: task not in the plan",
                    "code": UNSCHEDULABLE}
        return {"status": f"caldera: planned on {target}", "code": UNSCHEDULABLE}

    def prioritize(self, task: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        target = self.planned.get(task_key(task))
        scores = {}
        for node in nodes:
            name = str(node.get("Name") or ((node.get("Node") or {}).get("metadata") or {}).get("name"))
            scores[name] = MAX_SCORE if name == target else 0.0
        return {"nodeScore": scores, "errorMessage": ""}

    def job_enqueueable(self, job: Mapping[str, Any]) -> dict[str, Any]:
        if self.snapshot is None:
            return {"status": ABSTAIN}
        uid = str(job.get("UID"))
        if self.plan is not None and uid in self.plan.results:
            return {"status": PERMIT if self.plan.results[uid].placed else REJECT}
        try:
            gang = gang_from_job(job, self.tier_names)
        except ValueError:
            return {"status": ABSTAIN}
        if gang is None:
            return {"status": ABSTAIN}
        plan = solve(self.snapshot, [gang], self.options)
        if plan.results[gang.name].placed:
            return {"status": PERMIT}
        self.reasons[uid] = plan.results[gang.name].reason or explain(self.snapshot, gang)
        self.unplaceable[uid] = str(self.reasons[uid])
        return {"status": REJECT}


@dataclass
class ExtenderSettings:
    host: str = "127.0.0.1"
    port: int = 8889
    kubeconfig: str | None = None
    time_limit_s: float = 0.5
    hypernode_refresh_s: float = 5.0


def cluster_hypernodes(kubeconfig: str | None, refresh_s: float) -> Callable[[], Sequence[HyperNodeSpec]]:
    """HyperNodes read from the API server, re-listed at most every `refresh_s` seconds."""
    from kubernetes import client

    from caldera.kube import api_client
    from topology.kube import hypernode_from_object

    api = client.CustomObjectsApi(api_client(kubeconfig))
    cache: dict[str, Any] = {"at": -1e9, "items": []}

    def get() -> Sequence[HyperNodeSpec]:
        if time.monotonic() - cache["at"] >= refresh_s:
            listed: Any = api.list_cluster_custom_object("topology.volcano.sh", "v1alpha1", "hypernodes")
            cache["items"] = [hypernode_from_object(h) for h in listed.get("items") or []]
            cache["at"] = time.monotonic()
        items: Sequence[HyperNodeSpec] = cache["items"]
        return items

    return get


def make_app(core: ExtenderCore) -> web.Application:
    lock = asyncio.Lock()

    async def call(request: web.Request) -> web.Response:
        verb = request.match_info["verb"]
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "request body is not JSON"}, status=400)
        async with lock:  # one session at a time; Volcano calls are sequential within a session
            try:
                result = await asyncio.to_thread(_dispatch, core, verb, body)
            except KeyError as exc:
                return web.json_response({"error": f"{verb}: missing field {exc}"}, status=400)
        if result is None:
            return web.json_response({"error": f"unknown verb {verb!r}"}, status=404)
        return web.json_response(result)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def plans(_: web.Request) -> web.Response:
        return web.json_response({"planned": core.history, "unplaceable": core.unplaceable})

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/debug/plans", plans)
    app.router.add_post("/{verb}", call)
    return app


def _dispatch(core: ExtenderCore, verb: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    if verb == "onSessionOpen":
        core.session_open(body)
        return {}
    if verb == "onSessionClose":
        core.session_close()
        return {}
    if verb == "predicate":
        return core.predicate(body["task"], body["node"])
    if verb == "prioritize":
        return core.prioritize(body["task"], body.get("nodes") or [])
    if verb == "jobEnqueueable":
        return core.job_enqueueable(body["job"])
    if verb == "jobReady":
        return {"status": True}
    if verb in ("allocateFunc", "deallocateFunc"):
        return {"errorMessage": ""}
    if verb in ("preemptable", "reclaimable"):
        # Caldera does not choose victims: abstain and let Volcano's own plugins decide.
        return {"status": ABSTAIN, "victims": body.get("evictees") or []}
    if verb == "queueOverused":
        return {"overused": False}
    if verb == "jobEnqueued":
        return {}
    return None


def run_extender(settings: ExtenderSettings) -> None:
    core = ExtenderCore(hypernodes=cluster_hypernodes(settings.kubeconfig, settings.hypernode_refresh_s),
                        options=SolveOptions(time_limit_s=settings.time_limit_s))
    log.info("extender listening", extra={"host": settings.host, "port": settings.port})
    web.run_app(make_app(core), host=settings.host, port=settings.port, access_log=None, print=None)
