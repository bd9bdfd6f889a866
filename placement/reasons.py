"""Why a gang cannot be placed: the first hard constraint that fails, checked from the pod up.

Structural reasons come first (they hold even on an empty cluster, so waiting will not help):
node selection, a pod larger than any node, a role replica or gang larger than any HyperNode of
its tier. Then the same checks against the free capacity now, and finally competition with the
other gangs planned in the same round.
"""

from __future__ import annotations

from placement.constraints import Eligibility
from placement.greedy import CapacityState, place_gang, place_role_replica
from placement.model import Gang, RoleReplica
from placement.plan import Reason
from placement.snapshot import Snapshot
from topology.resources import GPU, fits, format_resources


def explain(snapshot: Snapshot, gang: Gang, role_replica: RoleReplica | None = None) -> Reason:
    """The most fundamental reason `gang` (or one optional role replica of it) is not placed."""
    elig = Eligibility(snapshot)
    replicas = [role_replica] if role_replica else [rr for rr in gang.role_replicas if rr.required]
    for rr in replicas:
        for pod in rr.pods:
            allowed = elig.nodes(pod.scheduling)
            if not allowed:
                sample = next(iter(sorted(snapshot.nodes)), None)
                why = pod.scheduling.rejection(snapshot.nodes[sample]) if sample else "the cluster has no nodes"
                return Reason("nodeSelection",
                              f"pod {pod.name}: no node passes its nodeSelector/affinity/tolerations "
                              f"(e.g. {sample}: {why})")
            if not any(fits(pod.requests, snapshot.nodes[n].allocatable) for n in allowed):
                return Reason("capacity", f"pod {pod.name} requests {format_resources(pod.requests)}, "
                                          f"more than any eligible node's allocatable", tier=0)
    empty = Snapshot(snapshot.nodes, {n: dict(i.allocatable) for n, i in snapshot.nodes.items()},
                     snapshot.parent, snapshot.tier, snapshot.leaf_of, snapshot.root)
    structural = _topology_reason(empty, gang, replicas, role_replica, " even on an empty cluster")
    if structural is not None:
        return structural
    for rr in replicas:
        for pod in rr.pods:
            if not any(fits(pod.requests, snapshot.free[n]) for n in elig.nodes(pod.scheduling)):
                return Reason("capacity", f"pod {pod.name} requests {format_resources(pod.requests)}; "
                                          f"no eligible node has that much free now", tier=0)
    now = _topology_reason(snapshot, gang, replicas, role_replica, "")
    if now is not None:
        return now
    if role_replica is not None:
        return Reason("competition", f"role replica {role_replica.name} fits alone but not beside the "
                                     f"gangs planned with it (it is optional: above gangPolicy's minimum)")
    return Reason("competition", "fits alone on the free capacity, but not together with the other gangs "
                                 "planned in the same round (higher priority first, then more gangs)")


def _topology_reason(snapshot: Snapshot, gang: Gang, replicas: list[RoleReplica],
                     role_replica: RoleReplica | None, suffix: str) -> Reason | None:
    elig = Eligibility(snapshot)
    for rr in replicas:
        state = CapacityState.of(snapshot)
        policy = gang.policy_for(rr.role)
        tier = policy.hard_tier if policy and policy.hard_tier is not None else snapshot.max_tier
        if place_role_replica(state, gang, rr, snapshot.root, elig) is None:
            return Reason("rolePolicy",
                          f"role replica {rr.name} needs {format_resources(_gpu_view_of(rr.demand))} "
                          f"within one HyperNode of tier ≤ {tier}{_largest(state, tier)}{suffix}", tier=tier)
    if role_replica is not None:
        return None
    state = CapacityState.of(snapshot)
    policy = gang.group_policy
    tier = policy.hard_tier if policy and policy.hard_tier is not None else snapshot.max_tier
    if place_gang(state, gang, elig) is None:
        return Reason("groupPolicy",
                      f"gang needs {format_resources(_gpu_view_of(gang.required_demand))} with every role "
                      f"replica placed, within one HyperNode of tier ≤ {tier}{_largest(state, tier)}{suffix}",
                      tier=tier)
    return None


def _largest(state: CapacityState, tier: int) -> str:
    candidates = [d for d in state.snapshot.domains if state.snapshot.tier[d] <= tier]
    if not candidates:
        return ""
    best = max(candidates, key=lambda d: (state.domain_free[d].get(GPU, 0), d))
    return f"; the most free such domain, {best}, has {format_resources(_gpu_view_of(state.domain_free[best]))}"


def _gpu_view_of(res: dict[str, int]) -> dict[str, int]:
    # The GPU count says most in a message; fall back to everything when no GPUs are involved.
    return {GPU: res[GPU]} if res.get(GPU) else dict(res)
