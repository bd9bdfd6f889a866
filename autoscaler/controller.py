"""kopf handlers of the autoscaler: AutoscalingPolicyBinding (Kthena v0.4) and
AutoscalingPolicy with a target (Kthena v1). Importing this module registers them.

Every `CALDERA_AUTOSCALER_PERIOD_SECONDS` (default 15, as Kthena) a timer per object:
reads the policy and its targets, refuses (condition AbleToScale=False) when an HPA or a
KEDA ScaledObject scales the same object, collects the metrics (pod scrape or Prometheus),
runs the pure core (`kpa`, `optimizer` or `heuristic`, `roles`), writes replicas through
the scale subresource (or a role's replicas by JSON patch), and records the decision in
the status and, when it changes something, in an Event with its reason. Windows and
panic state live in memory per object and generation; a restarted controller starts in
panic mode, so it never scales down on history it lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from autoscaler import policy as P
from autoscaler.api import (
    GROUP,
    VERSION,
    AutoscalingPolicy,
    AutoscalingPolicyBinding,
    AutoscalingPolicySpec,
    DisaggregatedTarget,
    HeterogeneousTarget,
    HomogeneousTarget,
    Target,
)
from autoscaler.capacity import CapacityEstimate, update_capacity
from autoscaler.demand import DemandEstimator
from autoscaler.heuristic import VariantBounds, distribute
from autoscaler.kpa import Decision, KpaConfig, KpaState, MetricSample, Tick, recommend
from autoscaler.kube import Kube
from autoscaler.optimizer import OptimizerConfig, Placeable, Variant, optimize
from autoscaler.placeable import free_gpus_by_type, gpu_type_of, gpus_per_pod
from autoscaler.queues import QueueRoom, queue_of, queue_room, replica_request
from autoscaler.roles import RatioConstraint, enforce_ratio
from autoscaler.sla import SlaMode, SlaPlan, SlaPlanner, observation_from_rates
from autoscaler.sources.pod_scrape import PodMetric, PodScraper, PodTarget, ScrapeConfig
from autoscaler.sources.prometheus import PrometheusSource, PromMetric, auth_from_dir, auth_from_secret

log = logging.getLogger("caldera.autoscaler")

PERIOD_SECONDS = float(os.environ.get("CALDERA_AUTOSCALER_PERIOD_SECONDS", "15"))
NAME_LABEL = "modelserving.volcano.sh/name"
ENTRY_LABEL = "modelserving.volcano.sh/entry"
ROLE_LABEL = "modelserving.volcano.sh/role"

DESIRED = Gauge("caldera_autoscaler_desired_replicas", "Desired replicas per scaled target.",
                ["namespace", "owner", "target"])
DECISIONS = Counter("caldera_autoscaler_scale_decisions_total", "Scale decisions that changed replicas.",
                    ["namespace", "owner", "direction"])
TICK_SECONDS = Histogram("caldera_autoscaler_tick_seconds", "Time of one autoscaler tick.", ["kind"])
REFUSED = Gauge("caldera_autoscaler_refused", "1 while an external autoscaler scales the same target.",
                ["namespace", "owner"])


class Refused(Exception):
    """The object cannot be acted on now; the message goes into a condition."""

    def __init__(self, condition: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.condition, self.reason, self.message = condition, reason, message


@dataclass
class Memory:
    """Per owner object and generation: KPA states, scrapers with their history."""

    generation: int
    kpa: dict[str, KpaState] = field(default_factory=dict)
    scrapers: dict[tuple[Any, ...], PodScraper] = field(default_factory=dict)
    prometheus: PrometheusSource | None = None
    demand: DemandEstimator | None = None
    capacity: dict[str, CapacityEstimate] = field(default_factory=dict)
    sla: SlaPlanner | None = None


@dataclass
class Runtime:
    kube: Kube | None = None
    memory: dict[tuple[str, str, str], Memory] = field(default_factory=dict)


RUNTIME = Runtime()


def _kube() -> Kube:
    if RUNTIME.kube is None:
        from kubernetes import client

        from caldera.kube import load_config

        if client.Configuration.get_default_copy().host in ("", "http://localhost"):
            load_config()
        RUNTIME.kube = Kube(client.ApiClient())
    return RUNTIME.kube


def _memory(kind: str, namespace: str, name: str, generation: int) -> Memory:
    key = (kind, namespace, name)
    mem = RUNTIME.memory.get(key)
    if mem is None or mem.generation != generation:
        mem = Memory(generation)
        RUNTIME.memory[key] = mem
    return mem


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def pod_targets(pods: list[dict[str, Any]]) -> list[PodTarget]:
    return [PodTarget(name=p["metadata"]["name"], ip=(p.get("status") or {}).get("podIP"), ready=_is_ready(p),
                      terminating=bool(p["metadata"].get("deletionTimestamp"))) for p in pods]


# -- metric collection -----------------------------------------------------------------------------
async def collect(mem: Memory, namespace: str, scope: str, plans: list[P.MetricPlan], base_labels: dict[str, str],
                  annotations: Mapping[str, str]) -> list[MetricSample]:
    kube = _kube()
    out: dict[str, MetricSample] = {}
    by_source: dict[tuple[Any, ...], list[P.MetricPlan]] = {}
    proms: list[PromMetric] = []
    for plan in plans:
        if isinstance(plan.source, P.PromSource):
            proms.append(PromMetric(plan.name, plan.target, plan.source.server_url, plan.source.query))
        else:
            src = plan.source
            key = (scope, src.port, src.path, tuple(sorted((src.labels or {}).items())))
            by_source.setdefault(key, []).append(plan)
    for key, group in by_source.items():
        _, port, path, extra = key
        scraper = mem.scrapers.get(key)
        if scraper is None:
            scraper = mem.scrapers[key] = PodScraper(ScrapeConfig(port=port, path=path))
        labels = {**base_labels, **dict(extra)}
        pods = await asyncio.to_thread(kube.pods, namespace, labels)
        q = P.quantile(annotations)
        metrics = [PodMetric(p.name, p.target, metric=getattr(p.source, "metric", None), quantile=q) for p in group]
        for sample in await scraper.collect(pod_targets(pods), metrics):
            out[sample.name] = sample
    if proms:
        if mem.prometheus is None:
            auth = None
            secret = P.annotation(annotations, "prometheus-auth-secret")
            if secret:
                obj = await asyncio.to_thread(kube.secret, namespace, secret)
                auth = auth_from_secret(obj.get("data"))
            elif os.environ.get("CALDERA_PROMETHEUS_AUTH_DIR"):
                auth = auth_from_dir(os.environ["CALDERA_PROMETHEUS_AUTH_DIR"])
            mem.prometheus = PrometheusSource(auth)
        for sample in await mem.prometheus.collect(proms):
            out[sample.name] = sample
    return [out[p.name] for p in plans]


# -- homogeneous -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: dict[str, Any]
    message: str
    events: list[tuple[str, str]]  # (reason, message)


def _target_ref(target: Target) -> tuple[str, str]:
    ref = target.target_ref
    return ref.kind or "ModelServing", ref.name or ""


def _role_index(ms: Mapping[str, Any], role: str) -> tuple[int, int]:
    roles = ((ms.get("spec") or {}).get("template") or {}).get("roles") or []
    for i, r in enumerate(roles):
        if r.get("name") == role:
            return i, int(r.get("replicas", 1))
    raise Refused("TargetFound", "RoleNotFound", f"role {role!r} not found in the target's spec.template.roles")


async def _get_target(kind: str, namespace: str, name: str) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(_kube().get_target, kind, namespace, name)
    except ApiException as exc:
        if exc.status == 404:
            raise Refused("TargetFound", "TargetNotFound", f"{kind} {namespace}/{name} not found") from exc
        raise
    except ValueError as exc:
        raise Refused("TargetFound", "UnsupportedKind", str(exc)) from exc


async def _refuse_if_external(namespace: str, owner: str, kind: str, name: str) -> None:
    found = await asyncio.to_thread(_kube().external_autoscalers, namespace, kind, name)
    REFUSED.labels(namespace, owner).set(1 if found else 0)
    if found:
        raise Refused("AbleToScale", "ConflictingAutoscaler",
                      f"{kind} {name} is also scaled by {', '.join(found)}; not scaling it")


def _pod_port(plans: list[P.MetricPlan]) -> int:
    """The port of the first pod-scraped metric (the saturation gauge is read there too)."""
    for plan in plans:
        if isinstance(plan.source, P.PodSource):
            return plan.source.port
    return P.PodSource().port


def _ready_replicas(obj: Mapping[str, Any]) -> int:
    status = obj.get("status") or {}
    for key in ("availableReplicas", "readyReplicas"):
        if status.get(key) is not None:
            return int(status[key])
    return 0


async def scale_homogeneous(mem: Memory, namespace: str, owner: str, spec: AutoscalingPolicySpec,
                            target: HomogeneousTarget, annotations: Mapping[str, str]) -> Outcome:
    kind, name = _target_ref(target.target)
    obj = await _get_target(kind, namespace, name)
    await _refuse_if_external(namespace, owner, kind, name)
    role = target.target.sub_targets.name if target.target.sub_targets and target.target.sub_targets.name else None
    labels = {NAME_LABEL: name} if kind == "ModelServing" else dict(
        ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    if kind == "ModelServing" and not P.scrape_all_pods(annotations):
        labels[ENTRY_LABEL] = "true"
    if role is not None:
        index, current = _role_index(obj, role)
        labels[ROLE_LABEL] = role
    else:
        index, current = -1, int((obj.get("spec") or {}).get("replicas", 1))
    config = P.kpa_config(spec, target.min_replicas, target.max_replicas, annotations)
    plans = P.metric_plans(spec.metrics, target.target)
    samples = await collect(mem, namespace, f"{kind}/{name}/{role or ''}", plans, labels, annotations)
    if role is not None:
        pods = await asyncio.to_thread(_kube().pods, namespace, {NAME_LABEL: name, ENTRY_LABEL: "true",
                                                                  ROLE_LABEL: role})
        ready = sum(1 for p in pod_targets(pods) if p.ready and not p.terminating)
    else:
        ready = _ready_replicas(obj)
    decision, mem.kpa[name] = recommend(config, mem.kpa.get(name, KpaState()), Tick(
        now=time.time(), current_replicas=current, ready_replicas=ready, metrics=tuple(samples)))
    events = []
    if decision.changed:
        if role is not None:
            await asyncio.to_thread(_kube().scale_role, namespace, name, index, role, decision.desired)
        else:
            await asyncio.to_thread(_kube().scale, kind, namespace, name, decision.desired)
        events.append(_event(namespace, owner, f"{kind} {name}" + (f" role {role}" if role else ""), decision))
    DESIRED.labels(namespace, owner, name if role is None else f"{name}/{role}").set(decision.desired)
    status = {"name": name if role is None else f"{name}/{role}", "currentReplicas": current,
              "desiredReplicas": decision.desired, "mode": decision.mode,
              "lastScaleTime": _rfc3339(mem.kpa[name].last_scale_time)}
    return Outcome({"homogeneousStatus": {k: v for k, v in status.items() if v is not None}},
                   decision.reason, events)


def _event(namespace: str, owner: str, what: str, decision: Decision) -> tuple[str, str]:
    up = decision.desired > decision.current
    DECISIONS.labels(namespace, owner, "up" if up else "down").inc()
    return ("ScaledUp" if up else "ScaledDown",
            f"{what}: {decision.current} -> {decision.desired} ({decision.mode}): {decision.reason}")


# -- heterogeneous ---------------------------------------------------------------------------------
async def scale_heterogeneous(mem: Memory, namespace: str, owner: str, spec: AutoscalingPolicySpec,
                              target: HeterogeneousTarget, annotations: Mapping[str, str]) -> Outcome:
    kube = _kube()
    options = P.heterogeneous_options(annotations)
    objs: list[dict[str, Any]] = []
    for param in target.params:
        kind, name = _target_ref(param.target)
        if kind != "ModelServing":
            raise Refused("TargetFound", "UnsupportedKind", f"heterogeneous params must be ModelServings, got {kind}")
        objs.append(await _get_target(kind, namespace, name))
        await _refuse_if_external(namespace, owner, kind, name)
    # Per metric, the pool's demand in target units: the sum over variants.
    units: dict[str, float] = {}
    seen: dict[str, float] = {}
    complete = True
    currents, readies, caps = [], [], []
    for param, obj in zip(target.params, objs, strict=True):
        _, name = _target_ref(param.target)
        labels = {NAME_LABEL: name}
        if not P.scrape_all_pods(annotations):
            labels[ENTRY_LABEL] = "true"
        plans = P.metric_plans(spec.metrics, param.target)
        currents.append(int((obj.get("spec") or {}).get("replicas", 1)))
        readies.append(min(_ready_replicas(obj), currents[-1]))
        samples_v = await collect(mem, namespace, name, plans, labels, annotations)
        prior = P.variant_capacity((obj.get("metadata") or {}).get("annotations") or {})
        estimate = mem.capacity.setdefault(name, CapacityEstimate(prior))
        if options.saturation_metric and readies[-1] > 0 and samples_v[0].value is not None:
            # Learn capacity from what ready replicas carry while requests wait (saturated).
            [waiting] = await collect(mem, namespace, name, [P.MetricPlan(
                options.saturation_metric, 1.0, P.PodSource(metric=options.saturation_metric,
                                                            port=_pod_port(plans)))], labels, annotations)
            mem.capacity[name] = estimate = update_capacity(
                estimate, samples_v[0].value / plans[0].target, readies[-1],
                saturated=(waiting.value or 0) > 0)
        for plan, sample in zip(plans, samples_v, strict=True):
            if sample.value is None or sample.observed_at is None or time.time() - sample.observed_at > 60:
                if readies[-1] == 0:
                    # No replica serves, so none carries load: absent series mean zero here.
                    units[plan.name] = units.get(plan.name, 0.0)
                    continue
                complete = False
                continue
            units[plan.name] = units.get(plan.name, 0.0) + sample.value / plan.target
            seen[plan.name] = sample.observed_at
        caps.append(estimate.value)
    pool_current = math.ceil(sum(c * n for c, n in zip(caps, currents, strict=True)) - 1e-9)
    pool_ready = math.floor(sum(c * n for c, n in zip(caps, readies, strict=True)) + 1e-9)
    lo = math.ceil(sum(c * p.min_replicas for c, p in zip(caps, target.params, strict=True)) - 1e-9)
    hi = max(1, math.floor(sum(c * p.max_replicas for c, p in zip(caps, target.params, strict=True)) + 1e-9))
    config = P.kpa_config(spec, lo, hi, annotations)
    samples = tuple(MetricSample(m.key, 1.0, units.get(m.key) if complete else None,
                                 seen.get(m.key) if complete else None) for m in spec.metrics or [])
    decision, mem.kpa["pool"] = recommend(config, mem.kpa.get("pool", KpaState()), Tick(
        now=time.time(), current_replicas=pool_current, ready_replicas=pool_ready, metrics=samples))
    names = [_target_ref(p.target)[1] for p in target.params]
    demand = float(decision.desired)
    if options.startup_delay_s > 0 and complete and units:
        # Replicas serve only after their start-up delay: provision for the forecast then.
        if mem.demand is None:
            mem.demand = DemandEstimator(lead=math.ceil(options.startup_delay_s / PERIOD_SECONDS),
                                         z=options.forecast_z, hold=1)
        forecast = mem.demand.observe(max(units.values()))
        if forecast > demand:
            demand = min(forecast, float(hi))
            decision = Decision(decision.desired, decision.current, decision.mode,
                                f"{decision.reason}; forecast {forecast:.2f} over the start-up delay", decision.inputs)
    if options.algorithm == "kthena":
        bounds = [VariantBounds(n, p.cost, p.min_replicas, p.max_replicas) for n, p in zip(names, target.params,
                                                                                             strict=True)]
        counts = dict(zip(names, distribute(decision.desired, bounds, target.cost_expansion_rate_percent),
                          strict=True))
        reasons = {n: f"costExpansionRatePercent {target.cost_expansion_rate_percent} block order" for n in names}
        summary = f"pool {pool_current} -> {decision.desired}: {decision.reason}"
    else:
        nodes, pods = await asyncio.gather(asyncio.to_thread(kube.nodes), asyncio.to_thread(kube.all_pods))
        free = free_gpus_by_type(nodes, pods)
        variants, extra = [], {}
        for n, p, obj, cur, rdy, cap in zip(names, target.params, objs, currents, readies, caps, strict=True):
            anns = (obj.get("metadata") or {}).get("annotations") or {}
            gpu_type = P.annotation(anns, "gpu-type") or gpu_type_of(obj)
            per_pod, pods_per_replica = gpus_per_pod(obj)
            if gpu_type is not None and per_pod > 0 and pods_per_replica > 1:
                extra[n] = sum(f // per_pod for f in free.get(gpu_type, [])) // pods_per_replica
            variants.append(Variant(n, float(p.cost), cap, p.min_replicas, p.max_replicas, current=cur, ready=rdy,
                                    gpus_per_replica=per_pod if pods_per_replica == 1 else 0,
                                    pool=gpu_type if per_pod > 0 else None,
                                    queue=queue_of(obj), request=replica_request(obj)))
        rooms = await queue_rooms(namespace, {v.queue for v in variants if v.queue is not None})
        placeable = Placeable(max_additional=extra, free_gpus={v.pool: free.get(v.pool, []) for v in variants
                                                               if v.pool is not None},
                              queues={q: room.left for q, room in rooms.items()})
        result = await asyncio.to_thread(optimize, variants, demand, placeable,
                                         OptimizerConfig(churn=options.churn, headroom=options.headroom))
        counts, reasons = result.replicas, result.reasons
        why = "; ".join(f"{n}: {r}" for n, r in reasons.items())
        summary = f"{result.summary()} | {why} [{decision.mode}: {decision.reason}]"
    events = []
    rows = []
    for n, cur in zip(names, currents, strict=True):
        want = counts[n]
        if want != cur:
            await asyncio.to_thread(kube.scale, "ModelServing", namespace, n, want)
            DECISIONS.labels(namespace, owner, "up" if want > cur else "down").inc()
            events.append(("ScaledUp" if want > cur else "ScaledDown",
                           f"ModelServing {n}: {cur} -> {want}: {reasons.get(n, '')}; {summary}"))
        DESIRED.labels(namespace, owner, n).set(want)
        rows.append({"name": n, "currentReplicas": cur, "desiredReplicas": want, "mode": decision.mode,
                     **({"lastScaleTime": ts} if (ts := _rfc3339(mem.kpa["pool"].last_scale_time)) else {})})
    return Outcome({"heterogeneousStatus": rows}, summary, events)


async def queue_rooms(namespace: str, names: set[str]) -> dict[str, QueueRoom]:
    """Room left in each named Volcano queue that has a capability (others cap nothing).

    Waiting PodGroups are read in the targets' namespace only (the grant is namespaced), so
    another namespace's waiting gangs in the same queue are not counted."""
    kube = _kube()
    queues = {n: q for n in sorted(names) if (q := await asyncio.to_thread(kube.queue, n)) is not None
              and ((q.get("spec") or {}).get("capability"))}
    if not queues:
        return {}
    podgroups = await asyncio.to_thread(kube.podgroups, namespace)
    rooms = {n: room for n, q in queues.items() if (room := queue_room(q, podgroups)) is not None}
    for room in rooms.values():
        log.debug("queue %s: capability %s, used %s (from %s)", room.name, room.capability, room.used,
                  room.used_from)
    return rooms


# -- SLA mode (Dynamo-style planner) -----------------------------------------------------------------
def _counter(name: str, metric: str) -> PodMetric:
    return PodMetric(name, 1.0, metric=metric, kind="counter")


async def _role_rates(mem: Memory, namespace: str, name: str, role: str, port: int,
                      metrics: list[PodMetric]) -> dict[str, float | None]:
    key = ("sla", name, role, port)
    scraper = mem.scrapers.get(key)
    if scraper is None:
        scraper = mem.scrapers[key] = PodScraper(ScrapeConfig(port=port))
    pods = await asyncio.to_thread(_kube().pods, namespace, {NAME_LABEL: name, ROLE_LABEL: role})
    return {s.name: s.value for s in await scraper.collect(pod_targets(pods), metrics)}


def _mean(rates: dict[str, float | None], total: str, count: str) -> float | None:
    t, c = rates.get(total), rates.get(count)
    return t / c if t is not None and c else None


async def sla_plan(mem: Memory, namespace: str, name: str, mode: SlaMode, current_decode: int,
                   port: int) -> SlaPlan | None:
    """Observe one interval from the engines' own counters, then plan (None before any traffic)."""
    if mem.sla is None:
        mem.sla = SlaPlanner(mode.prefill, mode.decode, mode.targets, mode.predictor)
    p = await _role_rates(mem, namespace, name, mode.prefill_role, port, [
        _counter("requests", "vllm:request_success_total"), _counter("prompt", "vllm:prompt_tokens_total"),
        _counter("ttft_sum", "vllm:time_to_first_token_seconds_sum"),
        _counter("ttft_count", "vllm:time_to_first_token_seconds_count")])
    d = await _role_rates(mem, namespace, name, mode.decode_role, port, [
        _counter("requests", "vllm:request_success_total"), _counter("generation", "vllm:generation_tokens_total"),
        _counter("itl_sum", "vllm:inter_token_latency_seconds_sum"),
        _counter("itl_count", "vllm:inter_token_latency_seconds_count")])
    obs = observation_from_rates(mode.targets.interval_s, d.get("requests") or p.get("requests"), p.get("prompt"),
                                 d.get("generation"), _mean(p, "ttft_sum", "ttft_count"),
                                 _mean(d, "itl_sum", "itl_count"))
    if obs is not None:
        mem.sla.observe(obs, current_decode)
    return mem.sla.plan()


# -- disaggregated (v1 roles) ---------------------------------------------------------------------
async def scale_disaggregated(mem: Memory, namespace: str, owner: str, spec: AutoscalingPolicySpec,
                              target: DisaggregatedTarget, annotations: Mapping[str, str]) -> Outcome:
    kube = _kube()
    kind, name = target.target_ref.kind or "ModelServing", target.target_ref.name or ""
    obj = await _get_target(kind, namespace, name)
    await _refuse_if_external(namespace, owner, kind, name)
    decisions: dict[str, Decision] = {}
    configs: dict[str, KpaConfig] = {}
    indexes: dict[str, tuple[int, int]] = {role: _role_index(obj, role) for role in target.roles}
    mode = P.sla_mode(annotations)
    planned: dict[str, int] = {}
    sla_reason = ""
    if mode is not None:
        for role in (mode.prefill_role, mode.decode_role):
            if role not in target.roles:
                raise ValueError(f"annotation {P.PREFIX}sla names role {role!r}, which the target does not scale")
        plan = await sla_plan(mem, namespace, name, mode, indexes[mode.decode_role][1], P.sla_port(annotations))
        if plan is None:
            sla_reason = "sla: no traffic observed yet; holding"
            planned = {r: indexes[r][1] for r in (mode.prefill_role, mode.decode_role)}
        else:
            sla_reason = f"sla: {plan.reason}"
            planned = {mode.prefill_role: plan.prefill, mode.decode_role: plan.decode}
    for role, param in target.roles.items():
        configs[role] = P.kpa_config(spec, param.min_replicas, param.max_replicas, annotations)
        current = indexes[role][1]
        if param.fixed:
            decisions[role] = Decision(param.min_replicas, current, "Stable", "fixed role", {})
            continue
        if role in planned:
            want = min(max(planned[role], configs[role].floor), configs[role].max_replicas)
            decisions[role] = Decision(want, current, "Stable", sla_reason, {})
            continue
        labels = {NAME_LABEL: name, ROLE_LABEL: role}
        if not P.scrape_all_pods(annotations):
            labels[ENTRY_LABEL] = "true"
        plans = P.metric_plans(param.metrics or spec.metrics, None, sources=param.metric_sources or {})
        samples = await collect(mem, namespace, f"{name}/{role}", plans, labels, annotations)
        pods = await asyncio.to_thread(kube.pods, namespace, {NAME_LABEL: name, ENTRY_LABEL: "true", ROLE_LABEL: role})
        ready = sum(1 for p in pod_targets(pods) if p.ready and not p.terminating)
        decisions[role], mem.kpa[role] = recommend(configs[role], mem.kpa.get(role, KpaState()), Tick(
            now=time.time(), current_replicas=current, ready_replicas=ready, metrics=tuple(samples)))
    replicas = {r: d.desired for r, d in decisions.items()}
    ratio_status: dict[str, Any] | None = None
    adjusted = False
    message = "; ".join(f"{r}: {d.reason}" for r, d in decisions.items())
    if target.ratio_constraint is not None:
        rc = target.ratio_constraint
        constraint = RatioConstraint(rc.numerator_role, rc.denominator_role, float(P.parse_ratio(rc.min_ratio)),
                                     float(P.parse_ratio(rc.max_ratio)))
        result = enforce_ratio(replicas, {r: (c.floor, c.max_replicas) for r, c in configs.items()}, constraint)
        replicas, adjusted = result.replicas, result.adjusted
        message += f"; {result.reason}"
        ratio_status = {"numeratorRole": rc.numerator_role, "denominatorRole": rc.denominator_role,
                        **({"currentRatio": f"{result.ratio:.3g}"} if result.ratio is not None else {})}
    events = []
    rows = []
    for role, want in replicas.items():
        index, current = indexes[role]
        if want != current:
            await asyncio.to_thread(kube.scale_role, namespace, name, index, role, want)
            DECISIONS.labels(namespace, owner, "up" if want > current else "down").inc()
            events.append(("ScaledUp" if want > current else "ScaledDown",
                           f"ModelServing {name} role {role}: {current} -> {want} ({decisions[role].mode}): "
                           f"{decisions[role].reason}"))
        DESIRED.labels(namespace, owner, f"{name}/{role}").set(want)
        state = mem.kpa.get(role)
        last = _rfc3339(state.last_scale_time) if state is not None else None
        rows.append({"name": role, "currentReplicas": current, "desiredReplicas": want,
                     "mode": decisions[role].mode, **({"lastScaleTime": last} if last else {})})
    status: dict[str, Any] = {"roles": rows, "ratioAdjusted": adjusted}
    if ratio_status:
        status["ratioStatus"] = ratio_status
    return Outcome({"disaggregatedStatus": status}, message, events)


# -- status ----------------------------------------------------------------------------------------
def _conditions(old: list[dict[str, Any]] | None, new: dict[str, tuple[str, str, str]],
                generation: int) -> list[dict[str, Any]]:
    """Merge conditions; the transition time moves only when the status flips."""
    now = _rfc3339(time.time())
    previous = {c.get("type"): c for c in old or []}
    out = []
    for ctype, (status, reason, message) in new.items():
        prev = previous.get(ctype)
        since = now if prev is None or prev.get("status") != status else prev.get("lastTransitionTime", now)
        out.append({"type": ctype, "status": status, "reason": reason, "message": message[:1000],
                    "observedGeneration": generation, "lastTransitionTime": since})
    return out


def _write_status(patch: kopf.Patch, body: Mapping[str, Any], status: dict[str, Any]) -> None:
    old = dict(body.get("status") or {})
    for key, value in status.items():
        if old.get(key) != value:
            patch.status[key] = value


async def run_owner(kind: str, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger,
                    scale: Any) -> None:
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")
    generation = int(meta.get("generation", 1))
    started = time.perf_counter()
    old_conditions = (body.get("status") or {}).get("conditions")
    conditions: dict[str, tuple[str, str, str]]
    status: dict[str, Any] = {"observedGeneration": generation}
    try:
        outcome = await scale(_memory(kind, namespace, name, generation))
        status.update(outcome.status)
        conditions = {"Ready": ("True", "Scaling", outcome.message), "TargetFound": ("True", "Found", ""),
                      "AbleToScale": ("True", "Scaled", "")}
        for reason, message in outcome.events:
            kopf.event(body, type="Normal", reason=reason, message=message[:1000])
            logger.info(message)
    except Refused as refused:
        conditions = {"Ready": ("False", refused.reason, refused.message)}
        conditions[refused.condition] = ("False", refused.reason, refused.message)
        if refused.condition != "TargetFound":
            conditions["TargetFound"] = ("True", "Found", "")
        if refused.reason == "ConflictingAutoscaler" and not any(
                c.get("reason") == refused.reason for c in old_conditions or []):
            kopf.event(body, type="Warning", reason=refused.reason, message=refused.message)
    except (ValueError, ValidationError) as exc:
        conditions = {"Ready": ("False", "InvalidSpec", str(exc))}
    finally:
        TICK_SECONDS.labels(kind).observe(time.perf_counter() - started)
    # Messages are refreshed with each new decision; between decisions their changing numbers
    # alone do not cause a write, so a steady state writes nothing.
    merged = _conditions(old_conditions, conditions, generation)
    old_status = body.get("status") or {}
    decided = any(old_status.get(k) != v for k, v in status.items() if k != "observedGeneration")
    if decided or [(c["type"], c["status"], c["reason"]) for c in merged] != [
            (c.get("type"), c.get("status"), c.get("reason")) for c in old_conditions or []]:
        status["conditions"] = merged
    _write_status(patch, body, status)


@kopf.timer(GROUP, VERSION, "autoscalingpolicybindings", interval=PERIOD_SECONDS, initial_delay=1.0)
async def binding_timer(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    binding = AutoscalingPolicyBinding.model_validate(dict(body))
    namespace = body.get("metadata", {}).get("namespace", "default")
    owner = body.get("metadata", {}).get("name", "")

    async def scale(mem: Memory) -> Outcome:
        try:
            raw = await asyncio.to_thread(_kube().get_policy, namespace, binding.spec.policy_ref.name or "")
        except ApiException as exc:
            if exc.status == 404:
                raise Refused("TargetFound", "PolicyNotFound",
                              f"AutoscalingPolicy {binding.spec.policy_ref.name} not found") from exc
            raise
        policy = AutoscalingPolicy.model_validate(raw)
        annotations = {**(policy.metadata.annotations or {}), **(binding.metadata.annotations or {})}
        if binding.spec.homogeneous_target is not None:
            return await scale_homogeneous(mem, namespace, owner, policy.spec, binding.spec.homogeneous_target,
                                           annotations)
        assert binding.spec.heterogeneous_target is not None
        return await scale_heterogeneous(mem, namespace, owner, policy.spec, binding.spec.heterogeneous_target,
                                         annotations)

    await run_owner("AutoscalingPolicyBinding", body, patch, logger, scale)


def _has_target(spec: Mapping[str, Any], **_: Any) -> bool:
    return any(k in spec for k in ("homogeneousTarget", "heterogeneousTarget", "disaggregatedTarget"))


@kopf.timer(GROUP, VERSION, "autoscalingpolicies", interval=PERIOD_SECONDS, initial_delay=1.0,
            when=lambda spec, **_: _has_target(spec))
async def policy_timer(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    policy = AutoscalingPolicy.model_validate(dict(body))
    namespace = body.get("metadata", {}).get("namespace", "default")
    owner = body.get("metadata", {}).get("name", "")
    annotations = dict(policy.metadata.annotations or {})
    spec = policy.spec

    async def scale(mem: Memory) -> Outcome:
        if spec.homogeneous_target is not None:
            return await scale_homogeneous(mem, namespace, owner, spec, spec.homogeneous_target, annotations)
        if spec.heterogeneous_target is not None:
            return await scale_heterogeneous(mem, namespace, owner, spec, spec.heterogeneous_target, annotations)
        assert spec.disaggregated_target is not None
        return await scale_disaggregated(mem, namespace, owner, spec, spec.disaggregated_target, annotations)

    await run_owner("AutoscalingPolicy", body, patch, logger, scale)


@kopf.on.delete(GROUP, VERSION, "autoscalingpolicybindings", optional=True)
@kopf.on.delete(GROUP, VERSION, "autoscalingpolicies", optional=True)
def forget(body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata", {})
    for kind in ("AutoscalingPolicyBinding", "AutoscalingPolicy"):
        RUNTIME.memory.pop((kind, meta.get("namespace", "default"), meta.get("name", "")), None)
