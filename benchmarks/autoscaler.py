"""Heterogeneous autoscaling benchmark: Kthena's heuristic vs Caldera's optimiser vs the
offline optimum, replayed through a discrete-time cluster model. Prints JSON.

    .venv/bin/python benchmarks/autoscaler.py [--offline-time-limit 60] [--seed 7]

Model. One step is one minute. Demand (requests/s) comes from a trace. Four variants
(GPU types) serve the model; a replica carries `capacity` requests/s within the SLO,
needs its GPUs while starting and running, and is ready `startup` steps after it was
asked for. A step violates the SLO when demand exceeds the ready capacity. Cost is
GPU-hours x price. Replicas the cluster cannot place stay Pending (no cost, no capacity)
until GPUs free up. Both online autoscalers see only the previous step's demand and the
current fleet; the offline optimum knows the whole trace.

* kthena: KPA total from a utilisation metric (replica-weighted average, target
  1/(1+headroom)), stabilised with Kthena's webhook defaults, split by the
  costExpansionRatePercent block order with `cost` = price per replica (the documented
  meaning) or, as `kthena_cost_per_capacity`, price per unit of capacity (the kindest
  reading); bounds are the GPUs each type has.
* caldera: `autoscaler.demand.DemandEstimator` (a smooth Kalman local-linear-trend
  forecast `startup` steps ahead that restarts at level shifts, plus a noise margin, held
  `--hold-steps`), then `autoscaler.optimizer.optimize` with what the cluster can place and
  a churn penalty: the same functions the controller calls.
* offline: the cheapest fleet that never violates, knowing the whole trace: a MIP solved
  by CP-SAT and then SCIP within `--offline-time-limit`; its best lower bound is reported
  too (a time-limited solve may stop short of optimal), and Caldera is compared with both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

# Run as a script, this file's folder comes first on sys.path and its name would shadow
# the `autoscaler` package; the repository root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from autoscaler.demand import DemandEstimator  # noqa: E402
from autoscaler.heuristic import VariantBounds, distribute  # noqa: E402
from autoscaler.kpa import KpaConfig, KpaState, MetricSample, PanicRule, RateRule, Tick, recommend  # noqa: E402
from autoscaler.optimizer import OptimizerConfig, Placeable, Variant, optimize  # noqa: E402

STEP_S = 60.0
STEP_H = STEP_S / 3600


@dataclass(frozen=True)
class Gpu:
    name: str
    price: float  # per GPU-hour
    capacity: float  # requests/s per replica within the SLO
    gpus: int  # per replica
    total: int  # GPUs of this type in the cluster
    startup: int  # steps


FLEET = (
    Gpu("h200", price=5.5, capacity=14, gpus=1, total=4, startup=3),
    Gpu("h100", price=4.0, capacity=10, gpus=1, total=8, startup=3),
    Gpu("a100", price=2.4, capacity=5, gpus=1, total=16, startup=3),
    Gpu("l40s", price=1.1, capacity=2, gpus=1, total=40, startup=2),
)


@dataclass(frozen=True)
class Trace:
    name: str
    demand: list[float]
    # GPUs of a type taken by someone else from a step on: (type, from_step, to_step, gpus)
    taken: list[tuple[str, int, int, int]] = field(default_factory=list)

    def free(self, gpu: Gpu, t: int) -> int:
        busy = sum(n for name, a, b, n in self.taken if name == gpu.name and a <= t < b)
        return max(0, gpu.total - busy)


def diurnal(rng: random.Random) -> Trace:
    days = 1440
    d = [max(1.0, 70 + 55 * math.sin(2 * math.pi * (t / days) - math.pi / 2) + rng.gauss(0, 3)) for t in range(days)]
    return Trace("diurnal", d)


def bursty(rng: random.Random) -> Trace:
    n = 360
    d = [40 + rng.gauss(0, 3) for _ in range(n)]
    t = 10
    while t < n:
        length, height = rng.randint(5, 20), rng.uniform(30, 70)
        ramp = rng.randint(1, 4)
        for k in range(length):
            if t + k < n:
                d[t + k] += height * min(1.0, (k + 1) / ramp)
        t += length + rng.randint(15, 50)
    return Trace("bursty", [max(1.0, x) for x in d])


def flash_crowd(rng: random.Random) -> Trace:
    n = 240
    d = []
    for t in range(n):
        base = 25.0
        if 60 <= t < 66:
            base += (t - 59) / 6 * 125
        elif 66 <= t < 130:
            base = 150.0
        elif 130 <= t < 170:
            base = 150 - (t - 130) / 40 * 125
        d.append(max(1.0, base + rng.gauss(0, 2)))
    # Another tenant takes all the H200s at the peak: asking for them is pointless.
    return Trace("flash_crowd", d, taken=[("h200", 90, 240, 4)])


@dataclass
class Fleet:
    """Per type: start steps of replicas that hold GPUs, plus Pending asks."""

    started: dict[str, list[int]]
    pending: dict[str, int]

    def count(self, g: str) -> int:
        return len(self.started[g])

    def ready(self, g: Gpu, t: int) -> int:
        return sum(1 for s in self.started[g.name] if t - s >= g.startup)

    def set(self, g: Gpu, want: int, t: int, free: int) -> int:
        """Scale one type to `want`; returns replicas changed. Starting replicas go first."""
        have = self.count(g.name)
        if want < have:
            self.started[g.name].sort()
            del self.started[g.name][want:]  # newest (still starting) first
            self.pending[g.name] = 0
            return have - want
        placeable = max(0, free // g.gpus - have)
        add = min(want - have, placeable)
        self.started[g.name].extend([t] * add)
        self.pending[g.name] = want - have - add
        return add


# (step, trace time, demands seen so far, fleet, trace) -> replicas per type
Policy = Callable[[int, int, list[float], Fleet, Trace], dict[str, int]]


def kthena_policy(cost_per_capacity: bool, headroom: float) -> Policy:
    bounds = [VariantBounds(g.name, round(100 * g.price * g.gpus / (g.capacity if cost_per_capacity else 1)),
                            0, g.total // g.gpus) for g in FLEET]
    config = KpaConfig(
        min_replicas=1, max_replicas=sum(b.max_replicas for b in bounds), tolerance_percent=10,
        stable_window_s=STEP_S, panic_window_s=STEP_S,
        scale_up=RateRule(instances=4, percent=100, period_s=60, stabilization_window_s=0),
        scale_down=RateRule(instances=0, percent=100, period_s=60, stabilization_window_s=300),
        panic=PanicRule(percent=1000, period_s=60, threshold_percent=200, hold_s=60),
    )
    state = [KpaState()]
    target = 1 / (1 + headroom)

    def decide(step: int, t: int, seen: list[float], fleet: Fleet, trace: Trace) -> dict[str, int]:
        asked = {g.name: fleet.count(g.name) + fleet.pending[g.name] for g in FLEET}
        total = sum(asked.values())
        ready = {g.name: fleet.ready(g, step) for g in FLEET}
        cap = sum(ready[g.name] * g.capacity for g in FLEET)
        n_ready = sum(ready.values())
        # Replica-weighted mean utilisation, as Kthena averages `_utilization` metrics.
        util = seen[-1] / cap if cap > 0 else 10.0
        value = util * max(n_ready, 1)
        tick = Tick(now=step * STEP_S, current_replicas=total, ready_replicas=n_ready,
                    metrics=(MetricSample("utilization", target, value, step * STEP_S),))
        decision, state[0] = recommend(config, state[0], tick)
        counts = distribute(decision.desired, bounds, 200)
        return {b.name: n for b, n in zip(bounds, counts, strict=True)}

    return decide


def caldera_policy(headroom: float, hold_steps: int, churn: float, z: float) -> Policy:
    estimator = DemandEstimator(lead=max(g.startup for g in FLEET), z=z, hold=hold_steps, headroom=headroom)

    def decide(step: int, t: int, seen: list[float], fleet: Fleet, trace: Trace) -> dict[str, int]:
        need = estimator.observe(seen[-1])
        variants = [Variant(g.name, g.price * g.gpus, g.capacity, 0, g.total // g.gpus,
                            current=fleet.count(g.name), ready=fleet.ready(g, step), gpus_per_replica=g.gpus,
                            pool=g.name) for g in FLEET]
        free = {g.name: [max(0, trace.free(g, t) - fleet.count(g.name) * g.gpus)] for g in FLEET}
        plan = optimize(variants, need, Placeable(free_gpus=free), OptimizerConfig(churn=churn))
        return plan.replicas

    return decide


WARMUP = 30  # steps at the first demand, not scored, so each policy starts from its own fleet


def simulate(trace: Trace, policy: Policy) -> dict[str, float]:
    fleet = Fleet({g.name: [] for g in FLEET}, {g.name: 0 for g in FLEET})
    cost = violation = changes = 0.0
    demands = [trace.demand[0]] * WARMUP + trace.demand
    seen = [trace.demand[0]]
    decide_ms: list[float] = []
    for step, demand in enumerate(demands):
        t = step - WARMUP  # trace time; negative while warming up
        scored = t >= 0
        t0 = time.perf_counter()
        want = policy(step, t, seen, fleet, trace)
        decide_ms.append((time.perf_counter() - t0) * 1000)
        for g in FLEET:
            free = trace.free(g, t)
            # A type whose GPUs someone else took loses the replicas that no longer fit.
            if fleet.count(g.name) > free // g.gpus:
                lost = fleet.set(g, free // g.gpus, step, free)
                changes += lost if scored else 0
            moved = fleet.set(g, want[g.name], step, free)
            changes += moved if scored else 0
        seen.append(demand)
        if not scored:
            continue
        capacity = sum(fleet.ready(g, step) * g.capacity for g in FLEET)
        if demand > capacity + 1e-9:
            violation += STEP_S / 60
        cost += sum(fleet.count(g.name) * g.gpus * g.price for g in FLEET) * STEP_H
    return {"cost": round(cost, 2), "violation_minutes": violation, "replica_changes": changes,
            "decision_ms_p50": round(statistics.median(decide_ms), 2)}


def offline_optimum(trace: Trace, time_limit_s: float) -> dict[str, float]:
    """The cheapest fleet that never violates the SLO, knowing the whole trace.

    y = replicas held, r = replicas ready at each step. The simulation releases the newest
    replica first, so the held replicas form a stack and the replicas that existed through
    [t - startup, t] are exactly min(y) over that interval: r[t] <= y[u] for each u there.
    (Tighter than counting starts, and exact for the simulation.) The fleet at step 0 is
    free and ready, as the online policies' warmed-up fleets are.

    Two solvers share the time limit: CP-SAT (its LNS workers find good fleets fast) and
    then SCIP, started from CP-SAT's best fleet, whose LP bound is the stronger; the cost
    reported is the better fleet and the lower bound the better bound (never below the LP).
    """
    n = len(trace.demand)
    his = {(g.name, t): trace.free(g, t) // g.gpus for g in FLEET for t in range(n)}
    windows = {(g.name, t): range(max(0, t - g.startup), t + 1) for g in FLEET for t in range(n)}
    price = {g.name: round(g.price * g.gpus * 100) for g in FLEET}  # cents per hour, integral

    m = cp_model.CpModel()
    cy = {k: m.new_int_var(0, hi, f"y_{k[0]}_{k[1]}") for k, hi in his.items()}
    cr = {k: m.new_int_var(0, hi, f"r_{k[0]}_{k[1]}") for k, hi in his.items()}
    for (g, t), us in windows.items():
        for u in us:
            m.add(cr[g, t] <= cy[g, u])
    for t, demand in enumerate(trace.demand):
        m.add(sum(round(g.capacity * 1000) * cr[g.name, t] for g in FLEET) >= math.ceil(demand * 1000 - 1e-6))
    m.minimize(sum(price[g] * cy[g, t] for g, t in cy))
    # A feasible start: each step's cheapest fleet for the demand (churn-aware, so the mix
    # does not flap), held from its start-up delay before the step it serves.
    plans: list[dict[str, int]] = []
    for t, demand in enumerate(trace.demand):
        last = plans[-1] if plans else {}
        plans.append(optimize([Variant(g.name, g.price * g.gpus, g.capacity, 0, trace.free(g, t) // g.gpus,
                                       current=min(last.get(g.name, 0), trace.free(g, t) // g.gpus))
                               for g in FLEET], demand, config=OptimizerConfig(churn=0.5)).target)
    for g in FLEET:
        for t in range(n):
            m.add_hint(cy[g.name, t], max(plans[u][g.name] for u in range(t, min(n, t + g.startup + 1))))
            m.add_hint(cr[g.name, t], plans[t][g.name])
    cp = cp_model.CpSolver()
    cp.parameters.max_time_in_seconds = time_limit_s / 2
    cp.parameters.num_workers = 2
    cp.parameters.random_seed = 1
    cp_status = cp.solve(m)
    if cp_status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"offline optimum: CP-SAT status {cp.status_name(cp_status)}")
    held = {k: int(cp.value(v)) for k, v in cy.items()}
    cp_bound = cp.best_objective_bound * STEP_H / 100

    solver = pywraplp.Solver.CreateSolver("SCIP")
    solver.SetTimeLimit(int(time_limit_s / 2 * 1000))
    y = {k: solver.IntVar(0, hi, f"y_{k[0]}_{k[1]}") for k, hi in his.items()}
    r = {k: solver.IntVar(0, hi, f"r_{k[0]}_{k[1]}") for k, hi in his.items()}
    for (g, t), us in windows.items():
        for u in us:
            solver.Add(r[g, t] <= y[g, u])
    for t, demand in enumerate(trace.demand):
        solver.Add(sum(g.capacity * r[g.name, t] for g in FLEET) >= demand)
    solver.Minimize(sum(price[g] * STEP_H / 100 * y[g, t] for g, t in y))
    ready = {(g, t): min(held[g, u] for u in us) for (g, t), us in windows.items()}
    keys = list(y)
    solver.SetHint([y[k] for k in keys] + [r[k] for k in keys],
                   [float(held[k]) for k in keys] + [float(ready[k]) for k in keys])
    status = solver.Solve()
    cp_cost = sum(price[g] * v for (g, _), v in held.items()) * STEP_H / 100
    if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE) and solver.Objective().Value() < cp_cost:
        cost, held = solver.Objective().Value(), {k: round(v.solution_value()) for k, v in y.items()}
    else:
        cost = cp_cost
    bound = max(cp_bound, solver.Objective().BestBound() if status != pywraplp.Solver.NOT_SOLVED else 0.0)
    changes = sum(abs(held[g.name, t] - held[g.name, t - 1]) for g in FLEET for t in range(1, n))
    return {"cost": round(cost, 2), "lower_bound": round(min(bound, cost), 2),
            "optimal": cost - bound <= 1e-6 * max(1.0, cost), "cp_sat_cost": round(cp_cost, 2),
            "violation_minutes": 0.0, "replica_changes": round(changes)}


def decision_time_16(rng: random.Random, rounds: int) -> dict[str, float]:
    pools = ["h200", "h100", "a100", "l40s"]
    samples, cpu = [], []
    for _ in range(rounds):
        variants = [Variant(f"v{i}", rng.uniform(1, 40), rng.uniform(0.5, 16), 0, 32, current=rng.randint(0, 6),
                            gpus_per_replica=rng.choice([1, 2, 4, 8]), pool=pools[i % 4]) for i in range(16)]
        free = {p: [rng.randint(0, 8) for _ in range(8)] for p in pools}
        demand = rng.uniform(10, 300)
        t0, c0 = time.perf_counter(), time.process_time()
        optimize(variants, demand, Placeable(free_gpus=free))
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    samples.sort()
    cpu.sort()

    def pct(xs: list[float], q: float) -> float:
        return round(xs[int(q * (len(xs) - 1))], 2)

    # CPU time too: on a shared machine wall time mostly measures the neighbours.
    return {"variants": 16, "rounds": rounds, "wall_p50_ms": pct(samples, 0.5), "wall_p95_ms": pct(samples, 0.95),
            "wall_max_ms": round(samples[-1], 2), "cpu_p50_ms": pct(cpu, 0.5), "cpu_p95_ms": pct(cpu, 0.95),
            "cpu_max_ms": round(cpu[-1], 2), "load_average_1m": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--headroom", type=float, default=0.05)
    ap.add_argument("--caldera-headroom", type=float, default=0.0)
    ap.add_argument("--z", type=float, default=2.0, help="noise margin in standard deviations")
    ap.add_argument("--hold-steps", type=int, default=2)
    ap.add_argument("--churn", type=float, default=0.1)
    ap.add_argument("--offline-time-limit", type=float, default=120.0)
    ap.add_argument("--decision-rounds", type=int, default=200)
    ap.add_argument("--traces", default="diurnal,bursty,flash_crowd")
    args = ap.parse_args()

    makers = {"diurnal": diurnal, "bursty": bursty, "flash_crowd": flash_crowd}
    out: dict[str, object] = {"step_s": STEP_S, "seed": args.seed, "kthena_headroom": args.headroom,
                              "caldera": {"headroom": args.caldera_headroom, "z": args.z, "hold_steps": args.hold_steps,
                                          "churn": args.churn},
                              "fleet": [g.__dict__ for g in FLEET]}
    traces: dict[str, object] = {}
    for name in filter(None, args.traces.split(",")):
        trace = makers[name](random.Random(args.seed))
        row: dict[str, object] = {"steps": len(trace.demand), "peak_demand": round(max(trace.demand), 1)}
        row["kthena"] = simulate(trace, kthena_policy(False, args.headroom))
        row["kthena_cost_per_capacity"] = simulate(trace, kthena_policy(True, args.headroom))
        row["caldera"] = simulate(trace, caldera_policy(args.caldera_headroom, args.hold_steps, args.churn, args.z))
        offline = offline_optimum(trace, args.offline_time_limit)
        row["offline"] = offline
        c = row["caldera"]["cost"]  # type: ignore[index]
        row["caldera_over_offline"] = round(c / offline["cost"] - 1, 4)
        row["caldera_over_offline_bound"] = round(c / offline["lower_bound"] - 1, 4)
        traces[name] = row
        print(f"{name}: done", file=sys.stderr)
    out["traces"] = traces
    if args.decision_rounds > 0:
        out["decision_time"] = decision_time_16(random.Random(args.seed), args.decision_rounds)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
