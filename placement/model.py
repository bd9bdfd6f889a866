"""The gang model: a ServingGroup as role replicas of pods, with its topology policies.

A `Gang` is what Volcano sees as one PodGroup: every role replica (Kthena's `<role>-<i>`, a
Volcano sub-group by `role-id`) is a set of pods that rolePolicy keeps within one HyperNode of
tier ≤ `role_policy.highest_tier_allowed`; groupPolicy bounds the whole gang. Role replicas
below the gang minimum (gangPolicy.minRoleReplicas) are `required`; the others are placed
only if they fit, never at the expense of a gang.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from topology.graph import NodeInfo, Taint
from topology.resources import GPU, Resources, total

# (key, operator, values): a NodeSelectorRequirement.
Requirement = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"  # or "Exists"
    value: str = ""
    effect: str = ""  # empty = every effect

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


@dataclass(frozen=True)
class Scheduling:
    """The scheduling constraints of a pod template that decide which nodes it may use."""

    node_selector: tuple[tuple[str, str], ...] = ()
    # Required node affinity: OR over terms, AND over the requirements of a term.
    affinity_terms: tuple[tuple[Requirement, ...], ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    def admits(self, node: NodeInfo) -> bool:
        if not node.schedulable:
            return False
        labels = node.labels
        if any(labels.get(k) != v for k, v in self.node_selector):
            return False
        if self.affinity_terms and not any(
            all(requirement_matches(labels, r) for r in term) for term in self.affinity_terms
        ):
            return False
        for taint in node.taints:
            if taint.effect in ("NoSchedule", "NoExecute") and not any(
                t.tolerates(taint) for t in self.tolerations
            ):
                return False
        return True

    def rejection(self, node: NodeInfo) -> str:
        """Why `node` is not admitted (for reasons), or the empty string."""
        if not node.schedulable:
            return "node unschedulable or not ready"
        if any(node.labels.get(k) != v for k, v in self.node_selector):
            return "nodeSelector"
        if self.affinity_terms and not any(
            all(requirement_matches(node.labels, r) for r in term) for term in self.affinity_terms
        ):
            return "nodeAffinity"
        for taint in node.taints:
            if taint.effect in ("NoSchedule", "NoExecute") and not any(
                t.tolerates(taint) for t in self.tolerations
            ):
                return f"taint {taint.key}={taint.value}:{taint.effect}"
        return ""


def requirement_matches(labels: Mapping[str, str], req: Requirement) -> bool:
    key, op, values = req
    value = labels.get(key)
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or not values:
            return False
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    raise ValueError(f"nodeAffinity: unknown operator {op!r} for key {key!r}")


@dataclass(frozen=True)
class PodRequest:
    """One pod to place. `current_node` is where it runs now (for stability), if anywhere."""

    name: str
    requests: Resources
    scheduling: Scheduling = Scheduling()
    current_node: str | None = None


@dataclass(frozen=True)
class TopologyPolicy:
    mode: Literal["hard", "soft"] = "hard"
    highest_tier_allowed: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("hard", "soft"):
            raise ValueError(f"networkTopology.mode: must be hard or soft, not {self.mode!r}")
        if self.highest_tier_allowed is not None and self.highest_tier_allowed < 1:
            raise ValueError(
                f"networkTopology.highestTierAllowed: must be ≥ 1, got {self.highest_tier_allowed}"
            )

    @property
    def hard_tier(self) -> int | None:
        """The tier bound that placement must respect, or None when there is none."""
        return self.highest_tier_allowed if self.mode == "hard" else None


@dataclass(frozen=True)
class RoleReplica:
    role: str
    index: int
    pods: tuple[PodRequest, ...]
    required: bool = True

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @cached_property
    def demand(self) -> Resources:
        return total(p.requests for p in self.pods)


@dataclass(frozen=True)
class Gang:
    """One ServingGroup (Volcano PodGroup) to place as a whole."""

    name: str
    role_replicas: tuple[RoleReplica, ...]
    group_policy: TopologyPolicy | None = None
    role_policy: TopologyPolicy | None = None
    # Per-role override of role_policy (Kthena applies one rolePolicy to every role).
    role_policies: Mapping[str, TopologyPolicy] = field(default_factory=dict)
    priority: int = 0
    # Nodes where other members of this ServingGroup already run: groupPolicy spans them too.
    anchored_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.role_replicas:
            raise ValueError(f"gang {self.name}: needs at least one role replica")
        seen: set[str] = set()
        for rr in self.role_replicas:
            if not rr.pods:
                raise ValueError(f"gang {self.name}: role replica {rr.name} has no pods")
            for pod in rr.pods:
                if pod.name in seen:
                    raise ValueError(f"gang {self.name}: pod name {pod.name!r} appears twice")
                seen.add(pod.name)

    def policy_for(self, role: str) -> TopologyPolicy | None:
        return self.role_policies.get(role, self.role_policy)

    @property
    def pods(self) -> list[PodRequest]:
        return [p for rr in self.role_replicas for p in rr.pods]

    @cached_property
    def demand(self) -> Resources:
        return total(p.requests for p in self.pods)

    @cached_property
    def required_demand(self) -> Resources:
        return total(p.requests for rr in self.role_replicas if rr.required for p in rr.pods)

    @cached_property
    def gpus(self) -> int:
        return self.demand.get(GPU, 0)
