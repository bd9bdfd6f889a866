"""`solve(snapshot, gangs, options) -> Plan`: joint gang placement with OR-Tools CP-SAT.

The model works at the level of leaf domains (tier-1 HyperNodes), not nodes, which keeps it
~30x smaller: each role replica picks one anchor domain of tier ≤ its rolePolicy, each gang one
of tier ≤ its groupPolicy, and pods are counted per leaf. Leaf capacity is exact for the sum of
each resource and, for GPUs, tight for power-of-two sized pods (a divisible family, where the
rounded-capacity conditions below are necessary and sufficient). A second step assigns nodes
inside each leaf by best-fit decreasing, falling back to an exact per-leaf model; a leaf that
still cannot take its pods gets a cut and the model is solved again.

The objective is lexicographic, encoded with weights that make each level dominate the next:
  1. gangs placed (lexicographic by priority), then GPUs placed;
  2. topology spread: Σ (tier - 1) of every role replica's and gang's domain;
  3. fragmentation: whole free leaf domains touched, and the free share of leaves used;
  4. stability: pods moved away from the leaf they run on now.
The greedy best-fit plan is a complete hint, and the answer whenever CP-SAT finds nothing better
within the time limit. Every plan carries its status, objective, bound and gap.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from placement.constraints import Eligibility
from placement.greedy import CapacityState, greedy_assign, pack_pods
from placement.model import Gang, PodRequest, RoleReplica, Scheduling
from placement.plan import GangResult, Plan, describe_result
from placement.reasons import explain
from placement.snapshot import Snapshot
from topology.resources import GPU, Resources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SolveOptions:
    time_limit_s: float = 2.0
    num_workers: int = 2
    use_cpsat: bool = True
    relative_gap: float = 0.0
    max_repair_rounds: int = 3
    log_search: bool = False
    # Break ties in the number of gangs placed by GPUs placed (use capacity) rather than leaving it free.
    gpu_tiebreak: bool = True
    # CP-SAT presolve probing: on this model it adds ~0.5M binary clauses from the containment
    # rows for little gain; off (0) it solves 10,240-node instances ~3-4x faster.
    probing_level: int = 0


@dataclass
class _Class:
    """Pods of one role replica that are interchangeable (same requests and constraints)."""

    rr: int
    requests: Resources
    scheduling: Scheduling
    pods: list[PodRequest]

    @property
    def n(self) -> int:
        return len(self.pods)


@dataclass
class _RR:
    gang: int
    replica: RoleReplica
    tier: int
    classes: list[int] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)


@dataclass
class _Score:
    placed_weight: int
    gpus: int
    spread: int
    fragmentation: int
    moved: int

    def key(self, gpu_tiebreak: bool = True) -> tuple[int, int, int, int, int]:
        return (self.placed_weight, self.gpus if gpu_tiebreak else 0, -self.spread, -self.fragmentation,
                -self.moved)


class _Problem:
    """Pre-processed gangs, classes and leaf capacities shared by the model and the scorer."""

    def __init__(self, snapshot: Snapshot, gangs: list[Gang]) -> None:
        self.snap = snapshot
        self.gangs = gangs
        self.elig = Eligibility(snapshot)
        self.group_tier = [self._group_tier(g) for g in gangs]
        self.rrs: list[_RR] = []
        self.classes: list[_Class] = []
        self.gang_rrs: list[list[int]] = [[] for _ in gangs]
        for gi, gang in enumerate(gangs):
            for rr in gang.role_replicas:
                policy = gang.policy_for(rr.role)
                bound = policy.hard_tier if policy and policy.hard_tier is not None else snapshot.max_tier
                ri = len(self.rrs)
                item = _RR(gang=gi, replica=rr, tier=min(bound, self.group_tier[gi]))
                groups: dict[tuple[tuple[tuple[str, int], ...], Scheduling], list[PodRequest]] = {}
                for pod in rr.pods:
                    groups.setdefault((tuple(sorted(pod.requests.items())), pod.scheduling), []).append(pod)
                for (req, sched), pods in groups.items():
                    item.classes.append(len(self.classes))
                    self.classes.append(_Class(rr=ri, requests=dict(req), scheduling=sched, pods=pods))
                self.rrs.append(item)
                self.gang_rrs[gi].append(ri)
        self.weights = self._priority_weights()
        # Node capacity as arrays, nodes grouped by leaf, so per-leaf sums are one reduceat.
        self.leaf_order = [leaf for leaf in snapshot.leaves if snapshot.leaf_nodes.get(leaf)]
        self.node_order = [n for leaf in self.leaf_order for n in snapshot.leaf_nodes[leaf]]
        self.leaf_start = np.cumsum([0] + [len(snapshot.leaf_nodes[leaf]) for leaf in self.leaf_order])[:-1]
        self.leaf_index = {leaf: i for i, leaf in enumerate(self.leaf_order)}
        self.resources = sorted({k for c in self.classes for k, v in c.requests.items() if v > 0} | {GPU})
        self.free_matrix = np.array(
            [[max(0, snapshot.free[n].get(r, 0)) for r in self.resources] for n in self.node_order], dtype=np.int64
        ).reshape(len(self.node_order), len(self.resources))
        leaf_sums = self._per_leaf(self.free_matrix)
        self.leaf_free: dict[str, Resources] = {
            leaf: {r: int(leaf_sums[i, j]) for j, r in enumerate(self.resources)}
            for i, leaf in enumerate(self.leaf_order)
        }
        alloc_gpu = self._per_leaf(np.array(
            [snapshot.nodes[n].allocatable.get(GPU, 0) for n in self.node_order], dtype=np.int64))
        self.leaf_alloc_gpu = {leaf: int(alloc_gpu[i]) for i, leaf in enumerate(self.leaf_order)}
        self.pristine = {
            leaf for leaf in self.leaf_order
            if all(snapshot.free[n] == snapshot.nodes[n].allocatable for n in snapshot.leaf_nodes[leaf])
        }
        self.domain_free: dict[str, Resources] = {d: {} for d in snapshot.tier}
        for leaf, free in self.leaf_free.items():
            for d in snapshot.chain(leaf):
                target = self.domain_free[d]
                for k, v in free.items():
                    target[k] = target.get(k, 0) + v
        self.class_slots: list[dict[str, int]] = [self._slots_per_leaf(c) for c in self.classes]
        self.class_domain_slots: list[dict[str, int]] = []
        for per_leaf in self.class_slots:
            per_domain: dict[str, int] = defaultdict(int)
            for leaf, count in per_leaf.items():
                for d in snapshot.chain(leaf):
                    per_domain[d] += count
            self.class_domain_slots.append(per_domain)
        gpu_col = self.free_matrix[:, self.resources.index(GPU)]
        self.gpu_sizes = sorted({c.requests.get(GPU, 0) for c in self.classes} - {0})
        self.rounded_gpu: dict[int, dict[str, int]] = {}
        self.count_gpu: dict[int, dict[str, int]] = {}
        for size in self.gpu_sizes:
            counts = self._per_leaf(gpu_col // size)
            self.count_gpu[size] = {leaf: int(counts[i]) for i, leaf in enumerate(self.leaf_order)}
            self.rounded_gpu[size] = {leaf: size * int(counts[i]) for i, leaf in enumerate(self.leaf_order)}
        self.gpu_tiebreak = True

    def _per_leaf(self, values: np.ndarray) -> np.ndarray:
        if len(self.node_order) == 0:
            return np.zeros((0, *values.shape[1:]), dtype=np.int64)
        return np.add.reduceat(values, self.leaf_start, axis=0)

    def _slots_per_leaf(self, cls: _Class) -> dict[str, int]:
        """How many pods of the class each leaf's nodes could take, each node counted alone."""
        if not self.node_order:
            return {}
        copies = np.full(len(self.node_order), cls.n, dtype=np.int64)
        for j, res in enumerate(self.resources):
            need = cls.requests.get(res, 0)
            if need > 0:
                copies = np.minimum(copies, self.free_matrix[:, j] // need)
        for res, need in cls.requests.items():
            if need > 0 and res not in self.resources:
                copies[:] = 0
        if not self.elig.is_unrestricted(cls.scheduling):
            allowed = self.elig.nodes(cls.scheduling)
            copies = copies * np.array([n in allowed for n in self.node_order], dtype=np.int64)
        sums = self._per_leaf(copies)
        return {leaf: int(sums[i]) for i, leaf in enumerate(self.leaf_order)}

    def _group_tier(self, gang: Gang) -> int:
        policy = gang.group_policy
        if policy and policy.hard_tier is not None:
            return min(policy.hard_tier, self.snap.max_tier)
        return self.snap.max_tier

    def _priority_weights(self) -> list[int]:
        levels = sorted({g.priority for g in self.gangs})
        weight_of: dict[int, int] = {}
        below = 0
        weight = 1
        for level in levels:
            weight_of[level] = weight
            count = sum(1 for g in self.gangs if g.priority == level)
            below += count * weight
            weight = below + 1
        # Optional role replicas count below any gang: scale gang weights above their total.
        optional = sum(1 for g in self.gangs for rr in g.role_replicas if not rr.required)
        return [weight_of[g.priority] * (optional + 1) for g in self.gangs]

    def slots(self, ci: int, leaf: str) -> int:
        return self.class_slots[ci].get(leaf, 0)

    def fragmentation_bucket(self, leaf: str) -> int:
        """0 for a nearly full leaf, 2 for a mostly free one (GPU share)."""
        alloc = self.leaf_alloc_gpu.get(leaf, 0)
        if alloc <= 0:
            return 0
        return min(2, (3 * self.leaf_free[leaf].get(GPU, 0)) // alloc)

    def score(self, assignments: dict[str, dict[str, str]]) -> _Score:
        """The lexicographic objective of a node-level plan (gang name -> pod -> node)."""
        snap = self.snap
        placed_weight = gpus = spread = frag = moved = 0
        touched: set[str] = set()
        for gi, gang in enumerate(self.gangs):
            assigned = assignments.get(gang.name)
            if not assigned:
                continue
            placed_weight += self.weights[gi]
            nodes = [*assigned.values(), *(n for n in gang.anchored_nodes if n in snap.leaf_of)]
            spread += snap.tier[snap.lca(nodes)] - 1
            for ri in self.gang_rrs[gi]:
                rr = self.rrs[ri].replica
                rr_nodes = [assigned[p.name] for p in rr.pods if p.name in assigned]
                if not rr_nodes:
                    continue
                gpus += sum(p.requests.get(GPU, 0) for p in rr.pods)
                if not rr.required:
                    placed_weight += 1
                domain = snap.lca(rr_nodes)
                spread += snap.tier[domain] - 1
                if domain in snap.leaf_nodes:
                    frag += self.fragmentation_bucket(domain)
                for p in rr.pods:
                    leaf = snap.leaf_of[assigned[p.name]]
                    touched.add(leaf)
                    if p.current_node is not None and snap.leaf_of.get(p.current_node) != leaf:
                        moved += 1
        frag += 2 * len(touched & self.pristine)
        return _Score(placed_weight, gpus, spread, frag, moved)


def solve(snapshot: Snapshot, gangs: list[Gang], options: SolveOptions | None = None) -> Plan:
    """Place as many gangs as possible, jointly, respecting every hard constraint."""
    options = options or SolveOptions()
    started = time.perf_counter()
    names = [g.name for g in gangs]
    if len(set(names)) != len(names):
        raise ValueError("solve: gang names must be unique")
    problem = _Problem(snapshot, gangs)
    problem.gpu_tiebreak = options.gpu_tiebreak
    candidates = [greedy_assign(snapshot, gangs, largest_first=True)]
    if len(gangs) > 1 and len(candidates[0]) < len(gangs):
        candidates.append(greedy_assign(snapshot, gangs, largest_first=False))
    greedy = max(candidates, key=lambda a: problem.score(a).key(options.gpu_tiebreak))
    greedy_seconds = time.perf_counter() - started
    best = greedy
    best_score = problem.score(greedy)
    status, objective, bound, gap = "GREEDY", 0.0, 0.0, 0.0
    stats: dict[str, object] = {"greedySeconds": round(greedy_seconds, 4), "greedyPlaced": len(greedy)}
    # Every gang placed with every lower level at its minimum: nothing left to improve.
    trivially_optimal = (len(greedy) == len(gangs) and best_score.spread == 0 and best_score.fragmentation == 0
                         and best_score.moved == 0)
    if options.use_cpsat and gangs and not trivially_optimal:
        model = _LeafModel(problem, options)
        model.build(greedy)
        stats.update(model.stats)
        cuts = 0
        for _ in range(options.max_repair_rounds + 1):
            remaining = options.time_limit_s - (time.perf_counter() - started)
            if remaining <= 0.01:
                break
            outcome = model.run(remaining)
            if outcome is None:
                break
            leaf_counts, cp_status, cp_obj, cp_bound = outcome
            realised, failed = _assign_nodes(problem, leaf_counts)
            if failed:
                cuts += len(failed)
                model.cut(failed, leaf_counts)
                continue
            cp_score = problem.score(realised)
            log.debug("cp score %s greedy score %s", cp_score, best_score)
            if cp_score.key(options.gpu_tiebreak) >= best_score.key(options.gpu_tiebreak):
                best, best_score = realised, cp_score
                status = "OPTIMAL" if cp_status == cp_model.OPTIMAL else "FEASIBLE"
            else:
                status = "GREEDY"
            objective, bound = cp_obj, cp_bound
            gap = 0.0 if cp_status == cp_model.OPTIMAL else abs(cp_bound - cp_obj) / max(1.0, abs(cp_bound))
            break
        stats.update(model.stats)
        stats["cuts"] = cuts
    elif trivially_optimal:
        status = "OPTIMAL"
    results = _results(problem, best)
    plan = Plan(results=results, status=status, objective=objective, bound=bound, gap=gap,
                solve_seconds=time.perf_counter() - started, stats=stats)
    plan.stats.update({
        "gangs": len(gangs), "placed": len(best), "gpusPlaced": best_score.gpus,
        "spread": best_score.spread, "fragmentation": best_score.fragmentation, "moved": best_score.moved,
    })
    log.debug("placement solved", extra={"stats": plan.stats, "status": status})
    return plan


def _results(problem: _Problem, assignments: dict[str, dict[str, str]]) -> dict[str, GangResult]:
    snap = problem.snap
    results: dict[str, GangResult] = {}
    for gang in problem.gangs:
        assigned = assignments.get(gang.name)
        if assigned:
            result = describe_result(snap, gang, assigned)
            for rr in gang.role_replicas:
                if rr.pods[0].name not in assigned:
                    result.unplaced_role_replicas[rr.name] = explain(snap, gang, rr)
            results[gang.name] = result
        else:
            results[gang.name] = GangResult(gang=gang.name, placed=False, reason=explain(snap, gang, None))
    return results


def _assign_nodes(
    problem: _Problem, leaf_counts: dict[str, dict[int, int]]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Node assignment inside each leaf; returns the plan and the leaves that could not take their pods."""
    snap = problem.snap
    state = CapacityState.of(snap)
    out: dict[str, dict[str, str]] = defaultdict(dict)
    failed: list[str] = []
    # Choose which concrete pods of a class go to which leaf: current leaf first (stability).
    pods_for: dict[str, list[PodRequest]] = defaultdict(list)
    for ci, cls in enumerate(problem.classes):
        spread = {leaf: counts[ci] for leaf, counts in leaf_counts.items() if counts.get(ci)}
        if not spread:
            continue
        remaining = list(cls.pods)
        for leaf in list(spread):
            here = [p for p in remaining if p.current_node and snap.leaf_of.get(p.current_node) == leaf]
            take = here[: spread[leaf]]
            for p in take:
                remaining.remove(p)
            pods_for[leaf].extend(take)
            spread[leaf] -= len(take)
        for leaf, count in spread.items():
            pods_for[leaf].extend(remaining[:count])
            remaining = remaining[count:]
    gang_of = {p.name: problem.gangs[problem.rrs[cls.rr].gang].name
               for cls in problem.classes for p in cls.pods}
    for leaf, pods in pods_for.items():
        placed = pack_pods(state, pods, snap.leaf_nodes[leaf], problem.elig)
        if placed is None:
            placed = _exact_leaf(problem, state, leaf, pods)
        if placed is None:
            failed.append(leaf)
            continue
        for pod, node in placed.items():
            out[gang_of[pod]][pod] = node
    return dict(out), failed


def _exact_leaf(problem: _Problem, state: CapacityState, leaf: str, pods: list[PodRequest]) -> dict[str, str] | None:
    """Exact bin packing of a leaf's pods onto its nodes (small: one leaf)."""
    nodes = problem.snap.leaf_nodes[leaf]
    model = cp_model.CpModel()
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    for i, pod in enumerate(pods):
        allowed = problem.elig.nodes(pod.scheduling)
        options = []
        for j, node in enumerate(nodes):
            if node in allowed and all(state.free[node].get(k, 0) >= v for k, v in pod.requests.items() if v > 0):
                x[i, j] = model.new_bool_var(f"x{i}_{j}")
                options.append(x[i, j])
        if not options:
            return None
        model.add_exactly_one(options)
    resources = {k for p in pods for k, v in p.requests.items() if v > 0}
    for j, node in enumerate(nodes):
        for res in resources:
            terms = [pods[i].requests.get(res, 0) * var for (i, jj), var in x.items() if jj == j]
            if terms:
                model.add(sum(terms) <= max(0, state.free[node].get(res, 0)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = 0.5
    solver.parameters.num_workers = 1
    if solver.solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    placed: dict[str, str] = {}
    for (i, j), var in x.items():
        if solver.value(var):
            placed[pods[i].name] = nodes[j]
            state.take(nodes[j], pods[i].requests)
    return placed


class _LeafModel:
    """The leaf-aggregated CP-SAT model."""

    def __init__(self, problem: _Problem, options: SolveOptions) -> None:
        self.p = problem
        self.options = options
        self.model = cp_model.CpModel()
        self.stats: dict[str, object] = {}
        self.placed: list[cp_model.IntVar] = []
        self.z: dict[tuple[int, str], cp_model.IntVar] = {}
        self.x: dict[tuple[int, str], cp_model.LinearExprT] = {}
        self.h: dict[tuple[int, str], cp_model.IntVar] = {}

    def build(self, hint: dict[str, dict[str, str]], objective_mode: str = "lexicographic") -> None:
        t0 = time.perf_counter()
        p, snap, m = self.p, self.p.snap, self.model
        leaf_set = set(snap.leaves)
        placed_vars: list[cp_model.IntVar] = []
        w: dict[tuple[int, str], cp_model.IntVar] = {}
        y: dict[int, cp_model.IntVar] = {}
        for gi, gang in enumerate(p.gangs):
            pv = m.new_bool_var(f"placed{gi}")
            placed_vars.append(pv)
            need = gang.required_demand
            anchors = [snap.leaf_of[n] for n in gang.anchored_nodes if n in snap.leaf_of]
            cands = [d for d in snap.domains_within(p.group_tier[gi]) if _covers(p, d, need)
                     and all(d in snap.chain(leaf) for leaf in anchors)]
            if not cands:
                m.add(pv == 0)
            for d in cands:
                w[gi, d] = m.new_bool_var(f"w{gi}_{d}")
            m.add(_sum(w[gi, d] for d in cands) == pv)
        self.placed = placed_vars
        spread_terms: list[cp_model.LinearExprT] = [
            (snap.tier[d] - 1) * v for (_, d), v in w.items() if snap.tier[d] > 1
        ]
        frag_terms: list[cp_model.LinearExprT] = []
        gpu_terms: list[cp_model.LinearExprT] = []
        leaf_terms: dict[str, list[int]] = defaultdict(list)  # leaf -> class ids with pods there
        for ri, rr in enumerate(p.rrs):
            gi = rr.gang
            yv = placed_vars[gi] if rr.replica.required else m.new_bool_var(f"y{ri}")
            if not rr.replica.required:
                m.add(yv <= placed_vars[gi])
            y[ri] = yv
            gpu_terms.append(rr.replica.demand.get(GPU, 0) * yv)
            anchors = []
            for d in snap.domains_within(rr.tier):
                if not _covers(p, d, rr.replica.demand):
                    continue
                if not all(p.class_domain_slots[c].get(d, 0) >= p.classes[c].n for c in rr.classes):
                    continue
                parents = [w[gi, a] for a in snap.chain(d) if (gi, a) in w]
                if not parents:
                    continue
                zv = m.new_bool_var(f"z{ri}_{d}")
                self.z[ri, d] = zv
                m.add(zv <= _sum(parents))
                anchors.append(d)
                spread_terms.append((snap.tier[d] - 1) * zv)
                if d in leaf_set:
                    frag_terms.append(p.fragmentation_bucket(d) * zv)
            rr.anchors = anchors
            m.add(_sum(self.z[ri, d] for d in anchors) == yv)
            high = [d for d in anchors if d not in leaf_set]
            leaves_high = sorted({leaf for d in high for leaf in snap.leaves_under[d]})
            for c in rr.classes:
                cls = p.classes[c]
                for leaf in anchors:
                    if leaf in leaf_set:
                        self.x[c, leaf] = cls.n * self.z[ri, leaf]
                        leaf_terms[leaf].append(c)
                if high:
                    hs = []
                    for leaf in leaves_high:
                        cap = min(cls.n, p.slots(c, leaf))
                        if cap <= 0:
                            continue
                        hv = m.new_int_var(0, cap, f"h{c}_{leaf}")
                        self.h[c, leaf] = hv
                        hs.append(hv)
                        covering = [self.z[ri, d] for d in snap.chain(leaf) if d in high]
                        m.add(hv <= cls.n * _sum(covering))
                        base = self.x.get((c, leaf))
                        self.x[c, leaf] = hv if base is None else _sum([base, hv])
                        if base is None:
                            leaf_terms[leaf].append(c)
                    m.add(_sum(hs) == cls.n * _sum(self.z[ri, d] for d in high))
        self.y = y
        self.w = w
        # Leaf capacity.
        n_constraints = 0
        touched: list[cp_model.IntVar] = []
        for leaf, cls_ids in leaf_terms.items():
            n_constraints += self._capacity(leaf, sorted(set(cls_ids)))
            if leaf in p.pristine:
                u = m.new_bool_var(f"u_{leaf}")
                for c in set(cls_ids):
                    m.add(self.x[c, leaf] <= p.classes[c].n * u)
                touched.append(u)
        frag_terms.extend(2 * u for u in touched)
        # Stability: pods kept in the leaf they run on now.
        kept_terms: list[cp_model.IntVar] = []
        self.kept: list[tuple[cp_model.IntVar, int, str, int]] = []
        moved_max = 0
        for c, cls in enumerate(p.classes):
            current: dict[str, int] = defaultdict(int)
            for pod in cls.pods:
                if pod.current_node is not None and pod.current_node in snap.leaf_of:
                    current[snap.leaf_of[pod.current_node]] += 1
            for leaf, count in current.items():
                moved_max += count
                if (c, leaf) in self.x:
                    kv = m.new_int_var(0, count, f"k{c}_{leaf}")
                    m.add(kv <= self.x[c, leaf])
                    kept_terms.append(kv)
                    self.kept.append((kv, c, leaf, count))
        # Lexicographic weights.
        gpu_total = sum(rr.replica.demand.get(GPU, 0) for rr in p.rrs)
        spread_max = sum(max(0, rr.tier - 1) for rr in p.rrs) + sum(max(0, t - 1) for t in p.group_tier)
        frag_max = 2 * len(p.rrs) + 2 * len(touched)
        k4 = moved_max + 1
        k3 = (frag_max + 1) * k4
        k2 = (spread_max + 1) * k3
        tiebreak_terms = gpu_terms if self.options.gpu_tiebreak else []
        if not self.options.gpu_tiebreak:
            gpu_total = 0
        k1 = (gpu_total + 1) * k2
        self.level_weight = k1
        objective = (
            k1 * _sum(p.weights[gi] * v for gi, v in enumerate(placed_vars))
            + k1 * _sum(v for ri, v in y.items() if not p.rrs[ri].replica.required)
            + k2 * _sum(tiebreak_terms)
            - k3 * _sum(spread_terms)
            - k4 * _sum(frag_terms)
            + _sum(kept_terms)
        )
        if objective_mode == "gpus":
            objective = _sum(gpu_terms)
        elif objective_mode == "gangs":
            objective = _sum(placed_vars)
        m.maximize(objective)
        self._hint(hint, touched)
        self.stats.update({
            "buildSeconds": round(time.perf_counter() - t0, 4),
            "variables": len(m.proto.variables), "constraints": len(m.proto.constraints),
            "leaves": len(snap.leaves), "capacityRows": n_constraints,
        })

    def _capacity(self, leaf: str, cls_ids: list[int]) -> int:
        p, m = self.p, self.model
        rows = 0
        free = p.leaf_free[leaf]
        resources = {k for c in cls_ids for k, v in p.classes[c].requests.items() if v > 0}
        for res in sorted(resources):
            terms = [(p.classes[c].requests.get(res, 0), c) for c in cls_ids if p.classes[c].requests.get(res, 0) > 0]
            if sum(a * p.classes[c].n for a, c in terms) > free.get(res, 0):
                m.add(_sum(a * self.x[c, leaf] for a, c in terms) <= max(0, free.get(res, 0)))
                rows += 1
        # GPUs: rounded capacity per pod size (exact for power-of-two families) and slot counts.
        sizes = sorted({p.classes[c].requests.get(GPU, 0) for c in cls_ids} - {0})
        for s in sizes:
            multiple = [c for c in cls_ids if p.classes[c].requests.get(GPU, 0) % s == 0
                        and p.classes[c].requests.get(GPU, 0) > 0]
            cap = p.rounded_gpu[s][leaf]
            if sum(p.classes[c].requests[GPU] * p.classes[c].n for c in multiple) > cap:
                m.add(_sum(p.classes[c].requests[GPU] * self.x[c, leaf] for c in multiple) <= cap)
                rows += 1
            bigger = [c for c in cls_ids if p.classes[c].requests.get(GPU, 0) >= s]
            count = p.count_gpu[s][leaf]
            if sum(p.classes[c].n for c in bigger) > count:
                m.add(_sum(self.x[c, leaf] for c in bigger) <= count)
                rows += 1
        # Per class: how many fit at all given its shape and eligible nodes.
        for c in cls_ids:
            slots = p.slots(c, leaf)
            if slots < p.classes[c].n:
                m.add(self.x[c, leaf] <= slots)
                rows += 1
        return rows

    def _hint(self, hint: dict[str, dict[str, str]], touched: list[cp_model.IntVar]) -> None:
        p, m, snap = self.p, self.model, self.p.snap
        touched_leaves: set[str] = set()
        hinted_z: set[tuple[int, str]] = set()
        hinted_w: set[tuple[int, str]] = set()
        h_values: dict[tuple[int, str], int] = {}
        placed_gangs: set[int] = set()
        for gi, gang in enumerate(p.gangs):
            assigned = hint.get(gang.name)
            if not assigned:
                continue
            group = snap.lca(assigned.values())
            if (gi, group) not in self.w:
                continue
            ok = True
            rr_choice: dict[int, str] = {}
            for ri in p.gang_rrs[gi]:
                rr = p.rrs[ri]
                nodes = [assigned[q.name] for q in rr.replica.pods if q.name in assigned]
                if not nodes:
                    continue
                d = snap.lca(nodes)
                if (ri, d) not in self.z:
                    ok = False
                    break
                rr_choice[ri] = d
            if not ok:
                continue
            placed_gangs.add(gi)
            hinted_w.add((gi, group))
            for ri, d in rr_choice.items():
                hinted_z.add((ri, d))
                for c in p.rrs[ri].classes:
                    for q in p.classes[c].pods:
                        leaf = snap.leaf_of[assigned[q.name]]
                        touched_leaves.add(leaf)
                        if d not in snap.leaf_nodes:
                            h_values[c, leaf] = h_values.get((c, leaf), 0) + 1
        for gi, v in enumerate(self.placed):
            m.add_hint(v, gi in placed_gangs)
        for key, v in self.w.items():
            m.add_hint(v, key in hinted_w)
        for ri, v in self.y.items():
            if not p.rrs[ri].replica.required:
                m.add_hint(v, any((ri, d) in hinted_z for d in p.rrs[ri].anchors))
        for key, v in self.z.items():
            m.add_hint(v, key in hinted_z)
        for key, v in self.h.items():
            m.add_hint(v, h_values.get(key, 0))
        for u in touched:
            m.add_hint(u, u.name[2:] in touched_leaves)
        in_leaf: dict[tuple[int, str], int] = defaultdict(int)
        for gi in placed_gangs:
            assigned = hint[p.gangs[gi].name]
            for ri in p.gang_rrs[gi]:
                for c in p.rrs[ri].classes:
                    for q in p.classes[c].pods:
                        if q.name in assigned:
                            in_leaf[c, snap.leaf_of[assigned[q.name]]] += 1
        for kv, c, leaf, count in self.kept:
            m.add_hint(kv, min(count, in_leaf.get((c, leaf), 0)))

    def run(self, time_limit: float) -> tuple[dict[str, dict[int, int]], Any, float, float] | None:
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, time_limit)
        solver.parameters.num_workers = self.options.num_workers
        solver.parameters.relative_gap_limit = self.options.relative_gap
        solver.parameters.log_search_progress = self.options.log_search
        solver.parameters.cp_model_probing_level = self.options.probing_level
        t0 = time.perf_counter()
        status = solver.solve(self.model)
        self.stats["cpsatSeconds"] = round(time.perf_counter() - t0, 4)
        self.stats["cpsatStatus"] = solver.status_name(status)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        counts: dict[str, dict[int, int]] = defaultdict(dict)
        for (c, leaf), expr in self.x.items():
            value = int(solver.value(expr))
            if value:
                counts[leaf][c] = value
        self.stats["gangLevelBound"] = int(solver.best_objective_bound // self.level_weight)
        return dict(counts), status, float(solver.objective_value), float(solver.best_objective_bound)

    def cut(self, failed: list[str], counts: dict[str, dict[int, int]]) -> None:
        """Forbid the exact load each failed leaf could not take (and anything containing it)."""
        m = self.model
        for leaf in failed:
            load = counts.get(leaf, {})
            # Σ_c x[c,leaf] ≥ load_c for all c cannot hold at once: at least one class falls short.
            shorts = []
            for c, value in load.items():
                b = m.new_bool_var(f"short{c}_{leaf}_{len(m.proto.variables)}")
                m.add(self.x[c, leaf] <= value - 1).only_enforce_if(b)
                shorts.append(b)
            m.add_bool_or(shorts)
        m.clear_hints()


def relaxation_bound(snapshot: Snapshot, gangs: list[Gang], time_limit_s: float = 30.0) -> dict[str, Any]:
    """Upper bounds on the GPUs and on the gangs any plan can place.

    Two relaxations, the tighter one wins: (1) capacity only: no plan places more GPUs than the
    nodes hold in multiples of the GCD of the pod sizes, nor more gangs than the smallest gangs
    that fit in that; (2) the leaf-aggregated model, which relaxes node packing (its leaf
    capacity rows are necessary conditions): CP-SAT's proven bound for each single objective.
    """
    sizes = [p.requests.get(GPU, 0) for g in gangs for p in g.pods if p.requests.get(GPU, 0) > 0]
    unit = math.gcd(*sizes) if sizes else 1
    capacity = sum(unit * (max(0, f.get(GPU, 0)) // unit) for f in snapshot.free.values())
    demand = sum(g.gpus for g in gangs)
    gang_count = 0
    used = 0
    for size in sorted(g.required_demand.get(GPU, 0) for g in gangs):
        if used + size > capacity:
            break
        used += size
        gang_count += 1
    out: dict[str, Any] = {"gpus": min(capacity, demand), "gangs": gang_count,
                           "capacityBound": {"gpus": min(capacity, demand), "gangs": gang_count}}
    problem = _Problem(snapshot, gangs)
    hint = greedy_assign(snapshot, gangs)
    for mode in ("gpus", "gangs"):
        model = _LeafModel(problem, SolveOptions(time_limit_s=time_limit_s / 2))
        model.build(hint, objective_mode=mode)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = time_limit_s / 2
        solver.parameters.num_workers = 2
        status = solver.solve(model.model)
        out[f"{mode}Status"] = solver.status_name(status)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) and math.isfinite(solver.best_objective_bound):
            out[mode] = min(out[mode], int(solver.best_objective_bound + 1e-6))
    return out


def _sum(items: Iterable[Any]) -> Any:
    """A CP-SAT linear sum (typed loosely: ortools' stubs don't model `sum` over variables)."""
    return cp_model.LinearExpr.sum(list(items))


def _covers(problem: _Problem, domain: str, demand: Resources) -> bool:
    """Necessary condition: the domain's summed free capacity covers `demand`."""
    totals = problem.domain_free[domain]
    return all(v <= 0 or totals.get(k, 0) >= v for k, v in demand.items())
