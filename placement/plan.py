"""Plans: where each pod goes, what each gang spans, and why a gang was left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from placement.model import Gang
from placement.snapshot import Snapshot
from topology.resources import Resources, add, sub


@dataclass(frozen=True)
class Reason:
    """Why a gang (or an optional role replica) is not placed."""

    constraint: str  # capacity | rolePolicy | groupPolicy | nodeSelection | competition | timeLimit
    message: str
    tier: int | None = None

    def __str__(self) -> str:
        where = f" (tier {self.tier})" if self.tier is not None else ""
        return f"{self.constraint}{where}: {self.message}"


@dataclass
class GangResult:
    gang: str
    placed: bool
    assignments: dict[str, str] = field(default_factory=dict)  # pod -> node
    group_domain: str | None = None  # LCA of the whole gang
    group_tier: int | None = None
    role_domains: dict[str, tuple[str, int]] = field(default_factory=dict)  # role replica -> (LCA, tier)
    unplaced_role_replicas: dict[str, Reason] = field(default_factory=dict)
    reason: Reason | None = None


@dataclass
class Plan:
    results: dict[str, GangResult]
    status: str  # OPTIMAL | FEASIBLE | GREEDY
    objective: float = 0.0
    bound: float = 0.0
    gap: float = 0.0  # relative: (bound - objective) / bound, 0 when proven optimal
    solve_seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def assignments(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for result in self.results.values():
            out.update(result.assignments)
        return out

    @property
    def placed(self) -> list[str]:
        return [g for g, r in self.results.items() if r.placed]

    @property
    def unplaced(self) -> list[str]:
        return [g for g, r in self.results.items() if not r.placed]

    def usage(self, gangs: list[Gang]) -> dict[str, Resources]:
        """Resources this plan takes per node."""
        requests = {p.name: p.requests for g in gangs for p in g.pods}
        out: dict[str, Resources] = {}
        for pod, node in self.assignments.items():
            out[node] = add(out.get(node, {}), requests[pod])
        return out

    def free_after(self, snapshot: Snapshot, gangs: list[Gang]) -> dict[str, Resources]:
        """Free capacity per domain once the plan is applied."""
        usage = self.usage(gangs)
        out: dict[str, Resources] = {}
        for domain in snapshot.domains:
            free: Resources = {}
            for node in snapshot.domain_nodes(domain):
                free = add(free, sub(snapshot.free[node], usage.get(node, {})))
            out[domain] = free
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "solveSeconds": round(self.solve_seconds, 4),
            "stats": self.stats,
            "gangs": {
                name: {
                    "placed": r.placed,
                    "groupDomain": r.group_domain,
                    "groupTier": r.group_tier,
                    "roles": {k: {"domain": d, "tier": t} for k, (d, t) in r.role_domains.items()},
                    "assignments": r.assignments,
                    "reason": str(r.reason) if r.reason else None,
                    "unplacedRoleReplicas": {k: str(v) for k, v in r.unplaced_role_replicas.items()},
                }
                for name, r in self.results.items()
            },
        }


def describe_result(snapshot: Snapshot, gang: Gang, assignments: dict[str, str]) -> GangResult:
    """Fill in the domains and tiers a set of assignments spans."""
    result = GangResult(gang=gang.name, placed=True, assignments=dict(assignments))
    nodes = [assignments[p.name] for p in gang.pods if p.name in assignments]
    if nodes:
        result.group_domain = snapshot.lca(nodes)
        result.group_tier = snapshot.tier[result.group_domain]
    for rr in gang.role_replicas:
        rr_nodes = [assignments[p.name] for p in rr.pods if p.name in assignments]
        if rr_nodes:
            domain = snapshot.lca(rr_nodes)
            result.role_domains[rr.name] = (domain, snapshot.tier[domain])
    return result
