"""Volcano's network-topology-aware gang allocation, re-implemented as a comparison baseline.

This follows `allocateForJob` of Volcano's allocate action with the `network-topology-aware`
plugin (v1.14+, with sub-group policies), one job at a time in queue order:

1. Gradients: the HyperNodes of tier <= the job's highestTierAllowed (soft mode is treated as
   hard at the virtual root's tier, as v1.15 does) whose idle resources cover the job's
   minResources, grouped by tier, lowest tier first.
2. For each gradient, every HyperNode is dry-run: each sub-job (role replica) searches its own
   gradients inside it (tier <= its rolePolicy), dry-runs every candidate, and keeps the one with
   the highest HyperNode binpack score (weighted mean over resources of (used + request) /
   allocatable; 0 on overflow). A HyperNode is feasible when the job becomes ready (every
   required sub-job allocated). The first gradient with a feasible HyperNode wins; among its
   HyperNodes the one with the highest summed sub-job score is committed.
3. Inside a HyperNode each task takes the best node by the node-order plugins: nodeorder
   (leastrequested + balancedresource) plus binpack, with the Volcano chart's arguments by
   default (binpack on cpu and memory only) or the local cluster's (`VolcanoConfig.local_cluster`,
   binpack weight 10 with `nvidia.com/gpu` weight 10). The network-topology-aware node score
   favours nodes close to the tasks already placed. Ties are broken at random with a fixed seed,
   as Volcano's SelectBestNode picks randomly among the best.

Differences kept on purpose: no preemption/backfill, no queue capacity, tasks in pod order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from placement.constraints import Eligibility
from placement.greedy import CapacityState
from placement.model import Gang, PodRequest, RoleReplica
from placement.snapshot import Snapshot
from topology.resources import CPU, GPU, MEMORY, Resources, fits, total


@dataclass(frozen=True)
class VolcanoConfig:
    """Plugin arguments. The defaults are the Volcano chart's; `local_cluster()` is Caldera's local cluster."""

    # binpack plugin: binpack.weight and per-resource weights (the chart's default has no GPU).
    binpack_weight: int = 1
    binpack_resources: tuple[tuple[str, int], ...] = ((CPU, 1), (MEMORY, 1))
    # network-topology-aware: hypernode.binpack.* weights.
    hypernode_binpack: tuple[tuple[str, int], ...] = ((CPU, 1), (MEMORY, 1))
    seed: int = 0

    @classmethod
    def local_cluster(cls) -> VolcanoConfig:
        """deploy/local/volcano-scheduler.yaml: binpack weight 10 with GPU weight 10, GPU-weighted HyperNode binpack."""
        return cls(binpack_weight=10, binpack_resources=((CPU, 1), (MEMORY, 1), (GPU, 10)),
                   hypernode_binpack=((CPU, 1), (MEMORY, 1), (GPU, 10)))


class _Allocator:
    def __init__(self, snapshot: Snapshot, config: VolcanoConfig) -> None:
        self.snap = snapshot
        self.config = config
        self.state = CapacityState.of(snapshot)
        self.elig = Eligibility(snapshot)
        self.rng = random.Random(config.seed)
        self.alloc_domain: dict[str, Resources] = {}
        for domain in snapshot.tier:
            self.alloc_domain[domain] = total(snapshot.nodes[n].allocatable for n in snapshot.domain_nodes(domain))
        self.min_tier = min(snapshot.tier.values())

    # ------------------------------------------------------------------ scores
    def node_score(self, node: str, request: Resources, job_domain: str | None) -> float:
        alloc = self.snap.nodes[node].allocatable
        free = self.state.free[node]
        fractions = {}
        for res in (CPU, MEMORY, GPU):
            cap = alloc.get(res, 0)
            if cap > 0:
                fractions[res] = (cap - free.get(res, 0) + request.get(res, 0)) / cap
        cpu, mem = fractions.get(CPU, 0.0), fractions.get(MEMORY, 0.0)
        score = ((1 - cpu) + (1 - mem)) / 2 * 100  # nodeorder: leastrequested
        score += (1 - abs(cpu - mem) / 2) * 100  # nodeorder: balancedresource
        weights = [(r, w) for r, w in self.config.binpack_resources if alloc.get(r, 0) > 0 and w > 0]
        if weights:  # binpack
            used = sum(w * fractions.get(r, 0.0) for r, w in weights)
            score += self.config.binpack_weight * used / sum(w for _, w in weights) * 100
        if job_domain is not None and self.snap.max_tier > self.min_tier:
            lca_tier = self.snap.tier[self.snap.lca_of_domains(self.snap.leaf_of[node], job_domain)]
            score += (self.snap.max_tier - lca_tier) / (self.snap.max_tier - self.min_tier) * 100
        return score

    def hypernode_score(self, domain: str, request: Resources) -> float:
        alloc = self.alloc_domain[domain]
        free = self.state.domain_free[domain]
        weighted = 0.0
        weights = 0
        for res, weight in self.config.hypernode_binpack:
            cap = alloc.get(res, 0)
            if cap <= 0 or weight <= 0:
                continue
            used = cap - free.get(res, 0) + request.get(res, 0)
            if used > cap:
                return 0.0
            weighted += weight * used / cap
            weights += weight
        return weighted / weights if weights else 0.0

    # ------------------------------------------------------------------ allocation
    def allocate_tasks(self, pods: Sequence[PodRequest], domain: str, job_domain: str | None) -> dict[str, str] | None:
        nodes = self.snap.domain_nodes(domain)
        placed: dict[str, str] = {}
        for pod in pods:
            allowed = self.elig.nodes(pod.scheduling)
            best: list[str] = []
            best_score = -1.0
            for node in nodes:
                if node not in allowed or not fits(pod.requests, self.state.free[node]):
                    continue
                score = self.node_score(node, pod.requests, job_domain)
                if score > best_score + 1e-9:
                    best, best_score = [node], score
                elif abs(score - best_score) <= 1e-9:
                    best.append(node)
            if not best:
                self.undo(placed, pods)
                return None
            node = best[0] if len(best) == 1 else self.rng.choice(best)
            self.state.take(node, pod.requests)
            placed[pod.name] = node
        return placed

    def undo(self, placed: dict[str, str], pods: Sequence[PodRequest]) -> None:
        requests = {p.name: p.requests for p in pods}
        for pod, node in placed.items():
            self.state.give(node, requests[pod])

    def gradients(self, within: str, max_tier: int, demand: Resources) -> list[list[str]]:
        by_tier: dict[int, list[str]] = {}
        stack = [within]
        while stack:
            d = stack.pop()
            stack.extend(self.snap.children[d])
            if self.snap.tier[d] <= max_tier and fits(demand, self.state.domain_free[d]) \
                    and self.snap.leaves_under[d]:
                by_tier.setdefault(self.snap.tier[d], []).append(d)
        return [sorted(by_tier[t]) for t in sorted(by_tier)]

    def allocate_subjob(self, gang: Gang, rr: RoleReplica, within: str, job_domain: str | None
                        ) -> tuple[dict[str, str], float] | None:
        policy = gang.policy_for(rr.role)
        tier = policy.hard_tier if policy and policy.hard_tier is not None else self.snap.max_tier
        for gradient in self.gradients(within, tier, rr.demand):
            best: tuple[float, dict[str, str]] | None = None
            for domain in gradient:
                score = self.hypernode_score(domain, rr.demand)
                placed = self.allocate_tasks(rr.pods, domain, job_domain)
                if placed is None:
                    continue
                self.undo(placed, rr.pods)
                if best is None or score > best[0]:
                    best = (score, placed)
            if best is not None:
                # Commit the dry run that won (Volcano commits its saved Statement).
                self.redo(best[1], rr.pods)
                return best[1], best[0]
        return None

    def redo(self, placed: dict[str, str], pods: Sequence[PodRequest]) -> None:
        requests = {p.name: p.requests for p in pods}
        for pod, node in placed.items():
            self.state.take(node, requests[pod])

    def allocate_in(self, gang: Gang, domain: str) -> tuple[dict[str, str], float] | None:
        assignments: dict[str, str] = {}
        score = 0.0
        job_domain: str | None = None
        for rr in gang.role_replicas:
            result = self.allocate_subjob(gang, rr, domain, job_domain)
            if result is None:
                if rr.required:
                    self.undo(assignments, gang.pods)
                    return None
                continue
            placed, sub_score = result
            assignments.update(placed)
            score += sub_score
            job_domain = self.snap.lca(assignments.values())
        return assignments, score

    def allocate_job(self, gang: Gang) -> dict[str, str] | None:
        policy = gang.group_policy
        tier = policy.hard_tier if policy and policy.hard_tier is not None else self.snap.max_tier
        for gradient in self.gradients(self.snap.root, tier, gang.required_demand):
            best: tuple[float, dict[str, str]] | None = None
            for domain in gradient:
                result = self.allocate_in(gang, domain)
                if result is None:
                    continue
                placed, score = result
                self.undo(placed, gang.pods)
                if best is None or score > best[0]:
                    best = (score, placed)
            if best is not None:
                self.redo(best[1], gang.pods)
                return best[1]
        return None


def volcano_allocate(
    snapshot: Snapshot, gangs: Sequence[Gang], config: VolcanoConfig | None = None
) -> dict[str, dict[str, str]]:
    """gang name -> pod -> node for the gangs Volcano would bind, in queue order (priority, then arrival)."""
    allocator = _Allocator(snapshot, config or VolcanoConfig())
    out: dict[str, dict[str, str]] = {}
    for gang in sorted(gangs, key=lambda g: -g.priority):  # stable: arrival order within a priority
        placed = allocator.allocate_job(gang)
        if placed is not None:
            out[gang.name] = placed
    return out
