"""Heterogeneous scaling: replicas per variant by exact optimisation (OR-Tools CP-SAT).

A *variant* is one ModelServing of the same model on other hardware or settings. Given
the demand (in the units of the policy metric's target), each variant's capacity per
replica in those units, its cost, bounds and current count, and what the cluster can
still place, :func:`optimize` chooses counts that

    minimise   Σ cost·x  +  churn·Σ cost·|x - current|  +  M·shortfall
    subject to Σ capacity·x + shortfall ≥ demand·(1 + headroom)
               min ≤ x ≤ max,   x - current ≤ what placement allows
               new replicas of one GPU pool packed onto that pool's nodes' free GPUs
               Σ request·(x - current)⁺ ≤ room left, per Volcano queue and capped resource

Make before break: replicas that serve now are released only while the replicas that
also serve now still cover the demand, so a shift to a cheaper variant keeps the old
replicas until the new ones are ready (the next decision releases them).

The shortfall term keeps the model feasible when the cluster is full: the plan then
carries the largest capacity the cluster can hold and says how much is missing.
Every plan lists, per variant, why it got its count.

Variants that share a queue share its room: one linear constraint per queue and resource
over their new replicas (`autoscaler.queues`). Replicas released do not free room for
others in the same decision: make before break keeps them until their replacements serve.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from autoscaler.queues import format_amount, replicas_that_fit

_SCALE = 1000  # CP-SAT is integral: capacities, demand and costs in thousandths


@dataclass(frozen=True)
class Variant:
    name: str
    cost: float  # per replica and hour (GPU price x GPUs per replica)
    capacity: float  # demand units one replica carries at its target
    min_replicas: int
    max_replicas: int
    current: int = 0
    ready: int | None = None  # of `current`, those serving now (None: all of them)
    gpus_per_replica: int = 0  # per node for single-node replicas; 0 = does not need GPUs
    pool: str | None = None  # GPU type whose free capacity limits new replicas
    queue: str | None = None  # Volcano queue its gangs go to
    request: Mapping[str, int] = field(default_factory=dict)  # per replica, base units (topology.resources)

    def __post_init__(self) -> None:
        if self.cost < 0:
            raise ValueError(f"variant {self.name!r}: cost must be >= 0, got {self.cost}")
        if not self.capacity > 0:
            raise ValueError(f"variant {self.name!r}: capacity must be > 0, got {self.capacity}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"variant {self.name!r}: need 0 <= minReplicas <= maxReplicas, "
                             f"got {self.min_replicas}..{self.max_replicas}")
        if self.current < 0:
            raise ValueError(f"variant {self.name!r}: current must be >= 0, got {self.current}")
        if self.ready is not None and not 0 <= self.ready <= self.current:
            raise ValueError(f"variant {self.name!r}: ready must be within 0..current, got {self.ready}")
        if self.gpus_per_replica < 0:
            raise ValueError(f"variant {self.name!r}: gpusPerReplica must be >= 0")
        if any(v < 0 for v in self.request.values()):
            raise ValueError(f"variant {self.name!r}: request must be >= 0 per resource, got {dict(self.request)}")


@dataclass(frozen=True)
class Placeable:
    """What the cluster can still place, from `topology`/`placement` or given directly.

    `max_additional[variant]` caps new replicas of one variant (e.g. multi-node gangs that
    need whole free domains); `free_gpus[pool]` lists free GPUs per node of a GPU type, and
    new single-node replicas of all variants in that pool are packed onto those nodes;
    `queues[queue]` is the room left per resource of a Volcano queue (`QueueRoom.left`),
    shared by the new replicas of all variants in that queue."""

    max_additional: Mapping[str, int] = field(default_factory=dict)
    free_gpus: Mapping[str, Sequence[int]] = field(default_factory=dict)
    queues: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerConfig:
    churn: float = 0.1  # penalty per replica changed, as a fraction of that replica's cost
    headroom: float = 0.0  # extra capacity asked for on top of the demand
    time_limit_s: float = 2.0
    workers: int = 1
    relative_gap: float = 0.0  # stop once proven within this fraction of the optimum

    def __post_init__(self) -> None:
        if self.churn < 0:
            raise ValueError(f"churn must be >= 0, got {self.churn}")
        if self.headroom < 0:
            raise ValueError(f"headroom must be >= 0, got {self.headroom}")


@dataclass(frozen=True)
class Plan:
    """`replicas` is what to ask for now; `target` the fleet it converges to (they differ
    while ready replicas are kept for replacements that still start). `capacity` and
    `cost` are the target's."""

    replicas: dict[str, int]
    target: dict[str, int]
    demand: float
    capacity: float
    cost: float
    shortfall: float
    status: str
    seconds: float
    reasons: dict[str, str]
    queue_limited: bool = False  # a queue's room stopped some variant from growing

    @property
    def meets_demand(self) -> bool:
        return self.shortfall <= 0

    def summary(self) -> str:
        parts = [f"{n}={c}" for n, c in self.replicas.items()]
        head = f"demand {self.demand:.2f} -> capacity {self.capacity:.2f} at cost {self.cost:.2f} ({', '.join(parts)})"
        full = "cluster or queue full" if self.queue_limited else "cluster full"
        return head if self.meets_demand else f"{head}; short by {self.shortfall:.2f}: {full}"


def max_additional_replicas(free_per_node: Sequence[int], gpus_per_replica: int) -> int:
    """New single-node replicas that fit on nodes with these free GPUs (one variant alone)."""
    if gpus_per_replica <= 0:
        raise ValueError(f"gpusPerReplica must be > 0, got {gpus_per_replica}")
    return sum(max(f, 0) // gpus_per_replica for f in free_per_node)


def is_divisible_chain(sizes: Sequence[int]) -> bool:
    ordered = sorted(set(sizes))
    return all(b % a == 0 for a, b in itertools.pairwise(ordered))


def divisible_slots(free_per_node: Sequence[int], size: int) -> int:
    """GPUs usable by replicas of `size` GPUs or more, when all sizes divide each other.

    With divisible sizes (1, 2, 4, 8 …) placing larger replicas first leaves every node's
    used count a multiple of each smaller size, so replicas fit on the nodes if and only if
    for each size s: Σ GPUs of replicas with size >= s <= s · Σ floor(free/s)."""
    return size * sum(max(f, 0) // size for f in free_per_node)


def fits(free_per_node: Sequence[int], sizes: Sequence[int]) -> bool:
    """Whether single-node replicas of these sizes fit (divisible sizes only)."""
    if not is_divisible_chain(sizes):
        raise ValueError(f"sizes must divide each other, got {sorted(set(sizes))}")
    return all(sum(g for g in sizes if g >= s) <= divisible_slots(free_per_node, s) for s in set(sizes))


def placement_cap(v: Variant, placeable: Placeable) -> int | None:
    caps: list[int] = []
    if v.name in placeable.max_additional:
        caps.append(max(0, placeable.max_additional[v.name]))
    if v.pool is not None and v.gpus_per_replica > 0 and v.pool in placeable.free_gpus:
        caps.append(max_additional_replicas(placeable.free_gpus[v.pool], v.gpus_per_replica))
    return min(caps) if caps else None


def queue_cap(v: Variant, placeable: Placeable) -> tuple[int, str] | None:
    """New replicas of `v` alone that its queue has room for, and the resource that binds."""
    if v.queue is None or v.queue not in placeable.queues:
        return None
    return replicas_that_fit(placeable.queues[v.queue], v.request)


def queue_reasons(variants: Sequence[Variant], target: Mapping[str, int],
                  placeable: Placeable) -> dict[str, str]:
    """Why a variant below maxReplicas got no more: its queue has no room for one more replica."""
    out: dict[str, str] = {}
    for v in variants:
        if v.queue is None or v.queue not in placeable.queues or target[v.name] >= v.max_replicas:
            continue
        left = placeable.queues[v.queue]
        used = {r: sum(u.request.get(r, 0) * max(0, target[u.name] - u.current) for u in variants
                       if u.queue == v.queue) for r in left}
        binding = [r for r, per in sorted(v.request.items()) if per > 0 and r in left
                   and left[r] - used[r] < per]
        if binding:
            r = binding[0]
            out[v.name] = (f"queue {v.queue} has {format_amount(r, left[r])} {r} left, "
                           f"{format_amount(r, v.request[r])} per replica")
    return out


def optimize(variants: Sequence[Variant], demand: float, placeable: Placeable | None = None,
             config: OptimizerConfig | None = None) -> Plan:
    started = time.perf_counter()
    if not variants:
        raise ValueError("variants must not be empty")
    if len({v.name for v in variants}) != len(variants):
        raise ValueError("variant names must be unique")
    if not math.isfinite(demand) or demand < 0:
        raise ValueError(f"demand must be a finite number >= 0, got {demand}")
    placeable = placeable or Placeable()
    config = config or OptimizerConfig()
    need = math.ceil(demand * (1 + config.headroom) * _SCALE - 1e-6)

    m = cp_model.CpModel()
    xs: list[cp_model.IntVar] = []  # the fleet to converge to
    acts: list[cp_model.IntVar] = []  # what to ask for now: the target plus ready replicas kept a while
    ups: list[cp_model.IntVar] = []
    kept_ready: list[cp_model.LinearExprT] = []
    cost_terms: list[cp_model.LinearExprT] = []
    caps: list[int | None] = []
    for v in variants:
        cap = placement_cap(v, placeable)
        caps.append(cap)
        hi = v.max_replicas
        room = queue_cap(v, placeable)
        for limit in (cap, room[0] if room else None):
            if limit is not None:
                # Placement and queues only limit growth; replicas that exist keep running.
                hi = max(min(hi, v.current + limit), min(v.current, v.max_replicas), v.min_replicas)
        x = m.new_int_var(v.min_replicas, hi, f"x_{v.name}")
        up = m.new_int_var(0, max(0, hi - v.current), f"up_{v.name}")
        down = m.new_int_var(0, max(0, v.current - v.min_replicas), f"down_{v.name}")
        m.add(x - v.current == up - down)
        ready = v.current if v.ready is None else v.ready
        kept = m.new_int_var(0, min(ready, v.max_replicas), f"kept_{v.name}")
        act = m.new_int_var(v.min_replicas, max(hi, min(ready, v.max_replicas)), f"a_{v.name}")
        m.add(act >= x)
        m.add(act >= kept)
        unit = round(v.cost * _SCALE)
        churn = round(v.cost * config.churn * _SCALE)
        # The target pays full cost and churn; the transition a small share, so that it
        # keeps no more ready replicas than covering the demand needs.
        cost_terms.append(unit * x + churn * (up + down) + max(1, unit // 100) * act)
        xs.append(x)
        acts.append(act)
        ups.append(up)
        kept_ready.append(round(v.capacity * _SCALE) * kept)

    # Pack new replicas of each pool onto that pool's nodes.
    pools: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        if v.pool is not None and v.gpus_per_replica > 0 and v.pool in placeable.free_gpus:
            pools.setdefault(v.pool, []).append(i)
    for pool, members in pools.items():
        if len(members) < 2:
            continue  # one variant alone: its cap above is exact
        free = [max(0, f) for f in placeable.free_gpus[pool]]
        sizes = sorted({variants[i].gpus_per_replica for i in members})
        if is_divisible_chain(sizes):
            # Exact without per-node variables (see `divisible_slots`).
            for size in sizes:
                m.add(sum(variants[i].gpus_per_replica * ups[i] for i in members
                          if variants[i].gpus_per_replica >= size) <= divisible_slots(free, size))
            continue
        per_variant: dict[int, list[cp_model.IntVar]] = {i: [] for i in members}
        for n, f in enumerate(free):
            ks = []
            for i in members:
                g = variants[i].gpus_per_replica
                k = m.new_int_var(0, f // g, f"k_{pool}_{n}_{i}")
                per_variant[i].append(k)
                ks.append(g * k)
            m.add(sum(ks) <= f)
        for i, placed in per_variant.items():
            m.add(sum(placed) >= ups[i])

    # Variants of one queue share its room: one constraint per queue and capped resource.
    queued: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        if v.queue is not None and v.queue in placeable.queues:
            queued.setdefault(v.queue, []).append(i)
    for queue, members in queued.items():
        for resource, left in placeable.queues[queue].items():
            terms = [variants[i].request.get(resource, 0) * ups[i] for i in members
                     if variants[i].request.get(resource, 0) > 0]
            if terms:
                m.add(cp_model.LinearExpr.sum(terms) <= max(0, left))

    shortfall = m.new_int_var(0, max(need, 0), "shortfall")
    m.add(sum(round(v.capacity * _SCALE) * x for v, x in zip(variants, xs, strict=True)) + shortfall >= need)
    ready_capacity = sum(round(v.capacity * _SCALE) * (v.current if v.ready is None else v.ready) for v in variants)
    ready_need = min(need, ready_capacity)
    gap = m.new_int_var(0, max(ready_need, 0), "ready_gap")
    m.add(cp_model.LinearExpr.sum(kept_ready) + gap >= ready_need)
    # One unit of shortfall must outweigh any cost the whole fleet could add.
    big = 1 + sum(round(v.cost * (1 + 2 * config.churn) * _SCALE) * v.max_replicas for v in variants)
    m.minimize(cp_model.LinearExpr.sum(cost_terms) + big * (shortfall + gap))

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = config.time_limit_s
    solver.parameters.num_workers = config.workers
    solver.parameters.relative_gap_limit = config.relative_gap
    solver.parameters.cp_model_probing_level = 0  # small models: probing costs more than it saves
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        # Out of time before any solution (a starved CPU): fall back to cheapest-first.
        return greedy_plan(variants, demand, need / _SCALE, caps, started, solver.status_name(status),
                           placeable.queues)
    target = {v.name: int(solver.value(x)) for v, x in zip(variants, xs, strict=True)}
    counts = {v.name: int(solver.value(a)) for v, a in zip(variants, acts, strict=True)}
    capacity = sum(v.capacity * target[v.name] for v in variants)
    cost = sum(v.cost * target[v.name] for v in variants)
    short = solver.value(shortfall) / _SCALE
    reasons = explain(variants, target, caps, demand, short)
    limited = queue_reasons(variants, target, placeable)
    for variant, why in limited.items():
        reasons[variant] += f"; {why}"
    for v in variants:
        if counts[v.name] > target[v.name]:
            reasons[v.name] += (f"; {counts[v.name] - target[v.name]} ready replicas kept until "
                                "the new ones serve")
    return Plan(replicas=counts, target=target, demand=demand, capacity=capacity, cost=cost, shortfall=short,
                status=solver.status_name(status), seconds=time.perf_counter() - started, reasons=reasons,
                queue_limited=bool(limited))


def greedy_plan(variants: Sequence[Variant], demand: float, need: float, caps: Sequence[int | None],
                started: float, status: str, queues: Mapping[str, Mapping[str, int]] | None = None) -> Plan:
    counts = {v.name: max(v.min_replicas, min(v.current, v.max_replicas)) for v in variants}
    capacity = sum(v.capacity * counts[v.name] for v in variants)
    # Room left per queue, drawn down by each new replica (so variants of a queue share it).
    left = {q: dict(r) for q, r in (queues or {}).items()}
    for v in variants:
        if v.queue in left:
            for r in left[v.queue]:
                left[v.queue][r] -= v.request.get(r, 0) * max(0, counts[v.name] - v.current)
    for v, cap in sorted(zip(variants, caps, strict=True), key=lambda vc: vc[0].cost / vc[0].capacity):
        room = v.max_replicas - counts[v.name]
        if cap is not None:
            room = min(room, max(0, v.current + cap - counts[v.name]))
        while room > 0 and capacity < need - 1e-9:
            if counts[v.name] >= v.current and v.queue in left:
                fit = replicas_that_fit(left[v.queue], v.request)
                if fit is not None and fit[0] < 1:
                    break
                for r in left[v.queue]:
                    left[v.queue][r] -= v.request.get(r, 0)
            counts[v.name] += 1
            capacity += v.capacity
            room -= 1
    reasons = {v.name: f"{v.current}->{counts[v.name]}; solver {status}: cheapest-first fallback, never lower"
               for v in variants}
    return Plan(replicas=counts, target=dict(counts), demand=demand, capacity=capacity,
                cost=sum(v.cost * counts[v.name] for v in variants), shortfall=max(0.0, need - capacity),
                status=f"FALLBACK_{status}", seconds=time.perf_counter() - started, reasons=reasons)


def explain(variants: Sequence[Variant], counts: Mapping[str, int], caps: Sequence[int | None],
            demand: float, shortfall: float) -> dict[str, str]:
    ranked = sorted(variants, key=lambda v: v.cost / v.capacity)
    rank = {v.name: i + 1 for i, v in enumerate(ranked)}
    out: dict[str, str] = {}
    for v, cap in zip(variants, caps, strict=True):
        n = counts[v.name]
        why = [f"{v.current}->{n}", f"cost/capacity {v.cost / v.capacity:.3g} (rank {rank[v.name]})"]
        if cap is not None and n >= v.current + cap and n < v.max_replicas:
            why.append(f"placement allows only {cap} more")
        if n == v.max_replicas:
            why.append("at maxReplicas")
        elif n == v.min_replicas:
            why.append("at minReplicas" if demand > 0 else "no demand")
        if n < v.current:
            why.append("released: cheaper capacity covers the demand")
        elif n == v.current and n not in (v.min_replicas, v.max_replicas):
            why.append("kept: changing it would cost more than it saves")
        if shortfall > 0:
            why.append(f"cluster short by {shortfall:.2f}")
        out[v.name] = "; ".join(why)
    return out
