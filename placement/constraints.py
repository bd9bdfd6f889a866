"""Hard constraints: which nodes a pod may use, and a checker that a plan breaks none of them."""

from __future__ import annotations

from placement.model import Gang, Scheduling
from placement.plan import Plan
from placement.snapshot import Snapshot
from topology.resources import add, fits


class Eligibility:
    """Per-`Scheduling` eligible node sets, computed once per snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._cache: dict[Scheduling, frozenset[str]] = {}
        self._plain = not any(n.taints or not n.schedulable for n in snapshot.nodes.values())

    def nodes(self, scheduling: Scheduling) -> frozenset[str]:
        found = self._cache.get(scheduling)
        if found is None:
            if self._plain and scheduling == Scheduling():
                found = frozenset(self.snapshot.nodes)
            else:
                found = frozenset(n for n, info in self.snapshot.nodes.items() if scheduling.admits(info))
            self._cache[scheduling] = found
        return found

    def is_unrestricted(self, scheduling: Scheduling) -> bool:
        return len(self.nodes(scheduling)) == len(self.snapshot.nodes)


def violations(snapshot: Snapshot, gangs: list[Gang], plan: Plan) -> list[str]:
    """Every hard constraint the plan breaks, as readable strings (empty when the plan is valid)."""
    out: list[str] = []
    eligibility = Eligibility(snapshot)
    usage: dict[str, dict[str, int]] = {}
    for gang in gangs:
        result = plan.results.get(gang.name)
        if result is None:
            out.append(f"{gang.name}: missing from the plan")
            continue
        assigned = result.assignments
        if not result.placed:
            if assigned:
                out.append(f"{gang.name}: unplaced but has assignments")
            continue
        for rr in gang.role_replicas:
            placed = [p.name in assigned for p in rr.pods]
            if rr.required and not all(placed):
                out.append(f"{gang.name}/{rr.name}: required role replica not fully placed")
            if any(placed) and not all(placed):
                out.append(f"{gang.name}/{rr.name}: partly placed")
            if not all(placed):
                continue
            nodes = [assigned[p.name] for p in rr.pods]
            policy = gang.policy_for(rr.role)
            tier = policy.hard_tier if policy else None
            if tier is not None and snapshot.lca_tier(nodes) > tier:
                out.append(f"{gang.name}/{rr.name}: spans tier {snapshot.lca_tier(nodes)} > rolePolicy {tier}")
        for pod in gang.pods:
            node = assigned.get(pod.name)
            if node is None:
                continue
            if node not in snapshot.nodes:
                out.append(f"{gang.name}/{pod.name}: unknown node {node}")
                continue
            if node not in eligibility.nodes(pod.scheduling):
                out.append(f"{gang.name}/{pod.name}: node {node} not admitted by the pod's scheduling constraints")
            usage[node] = add(usage.get(node, {}), pod.requests)
        group_tier = gang.group_policy.hard_tier if gang.group_policy else None
        if group_tier is not None and assigned:
            actual = snapshot.lca_tier([*assigned.values(), *(n for n in gang.anchored_nodes if n in snapshot.nodes)])
            if actual > group_tier:
                out.append(f"{gang.name}: spans tier {actual} > groupPolicy {group_tier}")
    for node, used in usage.items():
        if not fits(used, snapshot.free[node]):
            out.append(f"node {node}: over capacity ({used} > free {snapshot.free[node]})")
    return out
