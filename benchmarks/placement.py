"""Placement benchmark: Caldera's CP-SAT plan vs Volcano's gradient allocation, and solve time.

Scenario (a): `rack-256` (256 nodes x 8 GPUs; 32 leaves of 8 nodes, 4 spines, 1 core) with 0/30/60%
of GPUs pre-occupied in scattered chunks, then a mixed stream of ServingGroups (1P1D with 1-2
nodes per role, 2P1D multi-node, 16-GPU TP groups; rolePolicy hard tier 1, groupPolicy hard
tier 2) submitted until nothing more fits. Volcano (re-implemented, `placement.volcano_baseline`)
takes them one by one; Caldera plans each arrival window jointly, carrying unplaced gangs over.
The upper bound is the CP-SAT bound of the leaf-aggregated relaxation, maximising GPUs.

Scenario (b): `solve()` time for one 32-pod gang on synthetic 4-tier clusters of 1,024 and
10,240 nodes, p50/p99 over 50 snapshots with scattered occupancy.

Run: .venv/bin/python benchmarks/placement.py [--quick]
"""

from __future__ import annotations

import os
import sys

# This file is named like the `placement` package it measures; keep its own directory off the path.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import json
import random
import statistics
import time
from typing import Any

from placement.model import Gang, PodRequest, RoleReplica, TopologyPolicy
from placement.plan import Plan
from placement.snapshot import Snapshot
from placement.solver import SolveOptions, relaxation_bound, solve
from placement.volcano_baseline import VolcanoConfig, volcano_allocate
from topology.resources import CPU, GPU, MEMORY, Resources, add
from topology.spec import TopologySpec

CPU_PER_GPU = 10_000  # millicores
MEM_PER_GPU = 100 * 2**30


def pod_requests(gpus: int) -> Resources:
    return {GPU: gpus, CPU: gpus * CPU_PER_GPU, MEMORY: gpus * MEM_PER_GPU}


def cluster(tiers: list[tuple[str, int]], nodes_per_leaf: int) -> Snapshot:
    spec = TopologySpec.model_validate({
        "tiers": [{"name": n, "count": c} for n, c in tiers],
        "nodesPerLeaf": nodes_per_leaf,
        "nodeDefaults": {"gpus": 8, "cpu": "96", "memory": "1024Gi", "gpuType": "NVIDIA-H100"},
    })
    return Snapshot.from_topology(spec.topology())


def occupy(snapshot: Snapshot, fraction: float, rng: random.Random, pattern: str = "chunks") -> Snapshot:
    """Take `fraction` of all GPUs, scattered: in chunks of 1, 2 or 4 GPUs on random nodes
    (`chunks`: fragments nodes), or as whole random nodes (`nodes`: fragments leaves and spines)."""
    nodes = sorted(snapshot.nodes)
    target = int(fraction * sum(snapshot.nodes[n].allocatable.get(GPU, 0) for n in nodes))
    usage: dict[str, Resources] = {}
    taken = 0
    sizes = (1, 2, 2, 4) if pattern == "chunks" else (8,)
    while taken < target:
        node = rng.choice(nodes)
        chunk = min(rng.choice(sizes), target - taken)
        used = usage.get(node, {}).get(GPU, 0)
        if used + chunk > snapshot.nodes[node].allocatable.get(GPU, 0):
            continue
        usage[node] = add(usage.get(node, {}), pod_requests(chunk))
        taken += chunk
    return snapshot.with_usage(usage)


def serving_group(name: str, kind: str, rng: random.Random, role_tier: int = 1, group_tier: int = 2) -> Gang:
    def replica(role: str, index: int, pods: int, gpus: int) -> RoleReplica:
        return RoleReplica(role=role, index=index, pods=tuple(
            PodRequest(f"{name}-{role}-{index}-{k}", pod_requests(gpus)) for k in range(pods)))

    replicas: tuple[RoleReplica, ...]
    if kind == "1p1d":
        replicas = (replica("prefill", 0, rng.choice((1, 2)), rng.choice((4, 8))),
                    replica("decode", 0, rng.choice((1, 2)), rng.choice((4, 8))))
    elif kind == "2p1d":
        replicas = (replica("prefill", 0, 2, 8), replica("prefill", 1, 2, 8), replica("decode", 0, 2, 8))
    else:  # tp16: one 16-GPU tensor-parallel group over two nodes
        replicas = (replica("engine", 0, 2, 8),)
    return Gang(name, replicas, TopologyPolicy("hard", group_tier), TopologyPolicy("hard", role_tier))


def stream(rng: random.Random, free_gpus: int) -> list[Gang]:
    """Gangs until their demand is 1.5x the free GPUs: more than can ever fit."""
    gangs: list[Gang] = []
    demand = 0
    kinds = ["1p1d"] * 4 + ["2p1d"] * 3 + ["tp16"] * 3
    while demand < 1.5 * free_gpus:
        gang = serving_group(f"sg{len(gangs)}", rng.choice(kinds), rng)
        gangs.append(gang)
        demand += gang.gpus
    return gangs


def metrics(snapshot: Snapshot, gangs: list[Gang], assignments: dict[str, dict[str, str]]) -> dict[str, Any]:
    by_name = {g.name: g for g in gangs}
    group_tiers = []
    role_tiers = []
    gpus = 0
    for name, assigned in assignments.items():
        gang = by_name[name]
        gpus += sum(p.requests.get(GPU, 0) for p in gang.pods if p.name in assigned)
        group_tiers.append(snapshot.lca_tier(assigned.values()))
        for rr in gang.role_replicas:
            nodes = [assigned[p.name] for p in rr.pods if p.name in assigned]
            if nodes:
                role_tiers.append(snapshot.lca_tier(nodes))
    return {
        "gangs": len(assignments),
        "gpus": gpus,
        "meanGroupTier": round(statistics.fmean(group_tiers), 3) if group_tiers else None,
        "meanRoleTier": round(statistics.fmean(role_tiers), 3) if role_tiers else None,
        "groupTierHistogram": {t: group_tiers.count(t) for t in sorted(set(group_tiers))},
    }


def caldera_stream(snapshot: Snapshot, gangs: list[Gang], window: int, options: SolveOptions
                   ) -> tuple[dict[str, dict[str, str]], list[Plan]]:
    placed: dict[str, dict[str, str]] = {}
    pending: list[Gang] = []
    plans = []
    current = snapshot
    for start in range(0, len(gangs), window):
        batch = pending + gangs[start:start + window]
        plan = solve(current, batch, options)
        plans.append(plan)
        newly = {g: r.assignments for g, r in plan.results.items() if r.placed}
        placed.update(newly)
        current = current.with_usage(plan.usage(batch))
        pending = [g for g in batch if g.name not in newly]
    return placed, plans


def scenario_a(quick: bool) -> dict[str, Any]:
    base = cluster([("core", 1), ("spine", 4), ("leaf", 8)], 8)
    out: dict[str, Any] = {}
    cases = [("chunks", 0.0), ("chunks", 0.3), ("chunks", 0.6), ("nodes", 0.3), ("nodes", 0.6)]
    for pattern, fraction in cases:
        rng = random.Random(int(fraction * 100) + 7)
        snap = occupy(base, fraction, rng, pattern)
        free = sum(f.get(GPU, 0) for f in snap.free.values())
        gangs = stream(rng, free)
        row: dict[str, Any] = {"freeGpus": free, "streamGangs": len(gangs),
                               "streamGpus": sum(g.gpus for g in gangs)}
        for label, config in (("volcanoChartDefault", VolcanoConfig()),
                              ("volcanoLocalClusterConfig", VolcanoConfig.local_cluster())):
            t0 = time.perf_counter()
            result = volcano_allocate(snap, gangs, config)
            row[label] = {**metrics(snap, gangs, result), "seconds": round(time.perf_counter() - t0, 3)}
        for window in ((16,) if quick else (8, 32)):
            t0 = time.perf_counter()
            options = SolveOptions(time_limit_s=2.0 if quick else 5.0)
            result, plans = caldera_stream(snap, gangs, window, options)
            row[f"calderaWindow{window}"] = {
                **metrics(snap, gangs, result), "seconds": round(time.perf_counter() - t0, 3),
                "solves": len(plans), "statuses": sorted({p.status for p in plans}),
            }
        t0 = time.perf_counter()
        offline = solve(snap, gangs, SolveOptions(time_limit_s=10.0 if quick else 30.0))
        row["calderaOneBatch"] = {
            **metrics(snap, gangs, {g: r.assignments for g, r in offline.results.items() if r.placed}),
            "seconds": round(time.perf_counter() - t0, 3), "status": offline.status,
        }
        t0 = time.perf_counter()
        bound = relaxation_bound(snap, gangs, time_limit_s=10.0 if quick else 30.0)
        row["upperBound"] = {**bound, "seconds": round(time.perf_counter() - t0, 3)}
        best_gangs = max(row[k]["gangs"] for k in row if k.startswith("volcano"))
        best_gpus = max(row[k]["gpus"] for k in row if k.startswith("volcano"))
        row["summary"] = {
            k: {"gangsMinusBestVolcano": v["gangs"] - best_gangs,
                "gpuGainOverBestVolcanoPct": round(100 * (v["gpus"] - best_gpus) / max(1, best_gpus), 2),
                "gpuGapToBoundPct": round(100 * (bound["gpus"] - v["gpus"]) / max(1, bound["gpus"]), 2),
                "gangGapToBoundPct": round(100 * (bound["gangs"] - v["gangs"]) / max(1, bound["gangs"]), 2)}
            for k, v in row.items() if k.startswith(("caldera", "volcano"))
        }
        key = f"{pattern}{int(fraction * 100)}pct"
        out[key] = row
        print(json.dumps({key: row}), file=sys.stderr)
    return out


def scenario_b(quick: bool) -> dict[str, Any]:
    sizes = {
        1024: ([("t4", 2), ("t3", 2), ("t2", 2), ("t1", 4)], 32),  # 32 leaves of 32 nodes
        10240: ([("t4", 5), ("t3", 4), ("t2", 4), ("t1", 4)], 32),  # 320 leaves of 32 nodes
    }
    runs = 10 if quick else 50
    out: dict[str, Any] = {}
    for n_nodes, (tiers, per_leaf) in sizes.items():
        base = cluster(tiers, per_leaf)
        assert len(base.nodes) == n_nodes, len(base.nodes)
        times = []
        statuses: dict[str, int] = {}
        placed = 0
        for i in range(runs):
            rng = random.Random(1000 + i)
            snap = occupy(base, rng.choice((0.3, 0.5, 0.7)), rng)
            gang = Gang(f"g{i}", tuple(
                RoleReplica(role=role, index=k, pods=tuple(
                    PodRequest(f"g{i}-{role}-{k}-{j}", pod_requests(4)) for j in range(8)))
                for role in ("prefill", "decode") for k in range(2)),
                TopologyPolicy("hard", 3), TopologyPolicy("hard", 1))
            t0 = time.perf_counter()
            plan = solve(snap, [gang], SolveOptions(time_limit_s=5.0))
            times.append(time.perf_counter() - t0)
            statuses[plan.status] = statuses.get(plan.status, 0) + 1
            placed += len(plan.placed)
        times.sort()
        out[f"nodes{n_nodes}"] = {
            "runs": runs, "p50_ms": round(1000 * statistics.median(times), 1),
            "p99_ms": round(1000 * times[min(len(times) - 1, int(0.99 * len(times)))], 1),
            "max_ms": round(1000 * times[-1], 1), "statuses": statuses, "placed": placed,
            "leaves": len(base.leaves),
        }
        print(json.dumps({f"nodes{n_nodes}": out[f"nodes{n_nodes}"]}), file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and shorter time limits")
    parser.add_argument("--scenario", choices=("a", "b", "all"), default="all")
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": {"cpus": 2}}
    if args.scenario in ("a", "all"):
        result["a_rack256_stream"] = scenario_a(args.quick)
    if args.scenario in ("b", "all"):
        result["b_solve_time"] = scenario_b(args.quick)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
