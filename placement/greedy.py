"""Greedy best-fit placement: the solver's complete warm start and its answer under a time limit.

Gangs go in order of priority, then size (largest first). Each gang tries domains from the
lowest tier up (least spread first) and, within a tier, the domain with the least free capacity
that can still hold it (best fit keeps emptier domains whole for later, larger gangs). Inside
the chosen domain, every role replica does the same within its own tier bound, and pods take
the node they fill best.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from placement.constraints import Eligibility
from placement.model import Gang, PodRequest, RoleReplica
from placement.snapshot import Snapshot
from topology.resources import CPU, GPU, MEMORY, Resources, add, fits, sub

# How many candidate domains a gang (or a role replica inside it) may try per tier; enough to get
# past fragmentation, small enough to stay fast on 10,000-node clusters.
MAX_TRIES_PER_TIER = 12


def fill_key(free: Resources, alloc: Resources) -> tuple[float, ...]:
    """Best-fit order: scarcest first (GPUs, then CPU and memory as fractions of allocatable)."""
    return (
        free.get(GPU, 0),
        free.get(CPU, 0) / max(1, alloc.get(CPU, 1)),
        free.get(MEMORY, 0) / max(1, alloc.get(MEMORY, 1)),
    )


def gang_order(gangs: Iterable[Gang], largest_first: bool = True) -> list[Gang]:
    sign = -1 if largest_first else 1
    return sorted(gangs, key=lambda g: (-g.priority, sign * g.gpus, sign * len(g.pods), g.name))


def pod_order(pods: Iterable[PodRequest]) -> list[PodRequest]:
    return sorted(pods, key=lambda p: (-p.requests.get(GPU, 0), -p.requests.get(CPU, 0),
                                       -p.requests.get(MEMORY, 0), p.name))


@dataclass
class CapacityState:
    """Free capacity per node and per domain, updated as pods are committed."""

    snapshot: Snapshot
    free: dict[str, Resources]
    domain_free: dict[str, Resources]

    @classmethod
    def of(cls, snapshot: Snapshot) -> CapacityState:
        free = {n: dict(f) for n, f in snapshot.free.items()}
        return cls(snapshot, free, domain_free_all(snapshot, free))

    def take(self, node: str, request: Resources) -> None:
        self.free[node] = sub(self.free[node], request)
        for d in self.snapshot.chain(self.snapshot.leaf_of[node]):
            self.domain_free[d] = sub(self.domain_free[d], request)

    def give(self, node: str, request: Resources) -> None:
        self.free[node] = add(self.free[node], request)
        for d in self.snapshot.chain(self.snapshot.leaf_of[node]):
            self.domain_free[d] = add(self.domain_free[d], request)


def domain_free_all(snapshot: Snapshot, free: dict[str, Resources]) -> dict[str, Resources]:
    out: dict[str, Resources] = {d: {} for d in snapshot.tier}
    for leaf, nodes in snapshot.leaf_nodes.items():
        leaf_sum: Resources = {}
        for n in nodes:
            leaf_sum = add(leaf_sum, free[n])
        for d in snapshot.chain(leaf):
            out[d] = add(out[d], leaf_sum)
    return out


def pack_pods(
    state: CapacityState,
    pods: Sequence[PodRequest],
    nodes: Sequence[str],
    eligibility: Eligibility,
) -> dict[str, str] | None:
    """Best-fit decreasing of `pods` onto `nodes`; commits and returns pod -> node, or None (no change)."""
    placed: dict[str, str] = {}
    requests = {p.name: p.requests for p in pods}
    for pod in pod_order(pods):
        allowed = eligibility.nodes(pod.scheduling)
        best: str | None = None
        best_key: tuple[float, ...] | None = None
        if pod.current_node in nodes and pod.current_node in allowed and fits(
            pod.requests, state.free[pod.current_node]
        ):
            best = pod.current_node
        else:
            for node in nodes:
                if node not in allowed:
                    continue
                free = state.free[node]
                if not fits(pod.requests, free):
                    continue
                key = fill_key(sub(free, pod.requests), state.snapshot.nodes[node].allocatable)
                if best_key is None or key < best_key:
                    best, best_key = node, key
        if best is None:
            for name, node in placed.items():
                state.give(node, requests[name])
            return None
        state.take(best, pod.requests)
        placed[pod.name] = best
    return placed


def _candidates(
    state: CapacityState, within: str | None, max_tier: int, demand: Resources
) -> list[list[str]]:
    """Domains (grouped by tier, lowest first, best fit first) under `within` that could hold `demand`."""
    snap = state.snapshot
    scope = snap.domains if within is None else _subdomains(snap, within)
    by_tier: dict[int, list[str]] = {}
    for d in scope:
        if snap.tier[d] <= max_tier and fits(demand, state.domain_free[d]):
            by_tier.setdefault(snap.tier[d], []).append(d)
    out = []
    for tier in sorted(by_tier):
        ranked = sorted(by_tier[tier], key=lambda d: (fill_key(state.domain_free[d], {}), d))
        out.append(ranked[:MAX_TRIES_PER_TIER])
    return out


def _subdomains(snap: Snapshot, domain: str) -> list[str]:
    out = [domain]
    stack = [domain]
    while stack:
        for child in snap.children[stack.pop()]:
            out.append(child)
            stack.append(child)
    return out


def place_role_replica(
    state: CapacityState, gang: Gang, rr: RoleReplica, within: str, eligibility: Eligibility
) -> dict[str, str] | None:
    snap = state.snapshot
    policy = gang.policy_for(rr.role)
    bound = policy.hard_tier if policy and policy.hard_tier is not None else snap.max_tier
    bound = min(bound, snap.tier[within])
    for tier_group in _candidates(state, within, bound, rr.demand):
        for domain in tier_group:
            placed = pack_pods(state, rr.pods, snap.domain_nodes(domain), eligibility)
            if placed is not None:
                return placed
    return None


def place_gang(state: CapacityState, gang: Gang, eligibility: Eligibility) -> dict[str, str] | None:
    """Place the whole gang (its required role replicas, and optional ones that fit) or nothing."""
    snap = state.snapshot
    bound = gang.group_policy.hard_tier if gang.group_policy and gang.group_policy.hard_tier else snap.max_tier
    replicas = sorted(gang.role_replicas, key=lambda r: (not r.required, -r.demand.get(GPU, 0), r.name))
    requests = {p.name: p.requests for p in gang.pods}
    anchors = [snap.leaf_of[n] for n in gang.anchored_nodes if n in snap.leaf_of]
    for tier_group in _candidates(state, None, bound, gang.required_demand):
        for domain in tier_group:
            if any(domain not in snap.chain(leaf) for leaf in anchors):
                continue  # the group's domain must also hold its members that already run
            assignments: dict[str, str] = {}
            ok = True
            for rr in replicas:
                placed = place_role_replica(state, gang, rr, domain, eligibility)
                if placed is None:
                    if rr.required:
                        ok = False
                        break
                    continue
                assignments.update(placed)
            if ok:
                return assignments
            for pod, node in assignments.items():
                state.give(node, requests[pod])
    return None


def greedy_assign(
    snapshot: Snapshot, gangs: Sequence[Gang], largest_first: bool = True
) -> dict[str, dict[str, str]]:
    """gang name -> pod -> node for every gang the greedy places (unplaced gangs are absent).

    Largest-first packs capacity best; smallest-first places the most gangs when capacity is short.
    """
    state = CapacityState.of(snapshot)
    eligibility = Eligibility(snapshot)
    out: dict[str, dict[str, str]] = {}
    for gang in gang_order(gangs, largest_first):
        placed = place_gang(state, gang, eligibility)
        if placed is not None:
            out[gang.name] = placed
    return out
