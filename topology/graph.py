"""The HyperNode/Node graph: tiers, leaf domains, lowest common ancestors, capacity per domain.

A `Topology` is a networkx DiGraph whose edges point from a HyperNode to its members (child
HyperNodes or Nodes). Like Volcano's scheduler session it adds a virtual root at tier
max + 1 above every parentless HyperNode, so every set of nodes has a common ancestor.

Used capacity is tracked per node from the pods bound (or nominated) to it and summed
incrementally into every ancestor domain, so `free(domain)` is O(resources), and adding or
removing a pod or a node touches only the few ancestors of that node.

A pod may arrive before its node (watches list pods and nodes independently, e.g. after a
restart): it is held pending under the node's name and counted when the node is added, so the
capacity it takes never looks free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from topology.resources import Resources, add, sub

ROOT = "<cluster-top-hypernode>"
NODE = "node"
HYPERNODE = "hypernode"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass
class NodeInfo:
    """What placement needs to know about one Kubernetes Node."""

    name: str
    allocatable: Resources
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    schedulable: bool = True


@dataclass(frozen=True)
class MemberSelector:
    """One `spec.members[]` entry of a HyperNode: exactly one of the three selectors."""

    type: str  # "Node" or "HyperNode"
    exact: str | None = None
    regex: str | None = None
    labels: tuple[tuple[str, str], ...] | None = None  # matchLabels
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # matchExpressions

    def __post_init__(self) -> None:
        chosen = [s for s in (self.exact, self.regex, self.labels) if s is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"members[].selector: exactly one of exactMatch, regexMatch, labelMatch is required "
                f"(got {len(chosen)})"
            )
        if self.type not in ("Node", "HyperNode"):
            raise ValueError(f"members[].type: must be Node or HyperNode, not {self.type!r}")
        if self.type == "HyperNode" and self.exact is None:
            # Volcano: "HyperNode member does not support regex match"; labelMatch is Node-only.
            raise ValueError("members[].selector: HyperNode members must use exactMatch")

    def matches_node(self, node: NodeInfo) -> bool:
        if self.exact is not None:
            return node.name == self.exact
        if self.regex is not None:
            # Go's regexp.MatchString, which Volcano uses, is unanchored.
            return re.search(self.regex, node.name) is not None
        assert self.labels is not None
        if any(node.labels.get(k) != v for k, v in self.labels):
            return False
        return all(_expression_matches(node.labels, e) for e in self.expressions)


def _expression_matches(labels: Mapping[str, str], expr: tuple[str, str, tuple[str, ...]]) -> bool:
    key, op, values = expr
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ValueError(f"labelMatch.matchExpressions[].operator: unknown operator {op!r}")


@dataclass(frozen=True)
class HyperNodeSpec:
    name: str
    tier: int
    members: tuple[MemberSelector, ...]
    tier_name: str | None = None


class Topology:
    """The mutable cluster graph kept up to date from watches (or built from a spec file)."""

    def __init__(self) -> None:
        self.graph: nx.DiGraph = nx.DiGraph()
        self.graph.add_node(ROOT, kind=HYPERNODE, tier=1)
        self.nodes: dict[str, NodeInfo] = {}
        self.hypernodes: dict[str, HyperNodeSpec] = {}
        self._node_used: dict[str, Resources] = {}
        self._domain_alloc: dict[str, Resources] = {ROOT: {}}
        self._domain_used: dict[str, Resources] = {ROOT: {}}
        self._pods: dict[str, tuple[str, Resources]] = {}
        # Pods whose node is not in the graph yet: node name -> pod key -> request.
        self._pending: dict[str, dict[str, Resources]] = {}
        self._pending_node: dict[str, str] = {}  # pod key -> node name
        self._parent: dict[str, str] = {}
        self._children: dict[str, list[str]] = {}
        self._generation = 0
        # Structure changes (nodes, labels, HyperNodes) only mark the wiring stale; it is rebuilt once,
        # on the next query, so a burst of watch events (e.g. the initial list) costs one rewire.
        self._dirty = False

    @classmethod
    def build(
        cls,
        nodes: Iterable[NodeInfo],
        hypernodes: Iterable[HyperNodeSpec],
        pods: Iterable[tuple[str, str, Mapping[str, int]]] = (),
    ) -> Topology:
        """Build in one pass (wiring once), then count `(key, node, request)` pods."""
        topo = cls()
        for node in nodes:
            topo.nodes[node.name] = node
            topo._node_used[node.name] = {}
        for spec in hypernodes:
            if spec.tier < 0:
                raise ValueError(f"HyperNode {spec.name}: spec.tier must be ≥ 0, got {spec.tier}")
            topo.hypernodes[spec.name] = spec
        topo._rewire()
        for key, node_name, request in pods:
            topo.add_pod(key, node_name, request)
        return topo

    # ----------------------------------------------------------------- structure
    @property
    def generation(self) -> int:
        """Bumped on every change, so callers can cache derived views."""
        return self._generation

    def upsert_node(self, node: NodeInfo) -> None:
        old = self.nodes.get(node.name)
        self.nodes[node.name] = node
        self._node_used.setdefault(node.name, {})
        if old is None or old.labels != node.labels:
            self._dirty = True
        elif old.allocatable != node.allocatable and not self._dirty:
            delta = sub(node.allocatable, old.allocatable)
            for domain in self.ancestors(node.name):
                self._domain_alloc[domain] = add(self._domain_alloc[domain], delta)
        self._generation += 1
        for key, req in self._pending.pop(node.name, {}).items():
            del self._pending_node[key]
            self.add_pod(key, node.name, req)

    def remove_node(self, name: str) -> None:
        if name not in self.nodes:
            return
        del self.nodes[name]
        self._node_used.pop(name, None)
        for key in [k for k, (n, _) in self._pods.items() if n == name]:
            del self._pods[key]
        self._dirty = True
        self._generation += 1

    def upsert_hypernode(self, spec: HyperNodeSpec) -> None:
        if spec.tier < 0:
            raise ValueError(f"HyperNode {spec.name}: spec.tier must be ≥ 0, got {spec.tier}")
        self.hypernodes[spec.name] = spec
        self._dirty = True
        self._generation += 1

    def remove_hypernode(self, name: str) -> None:
        if self.hypernodes.pop(name, None) is not None:
            self._dirty = True
            self._generation += 1

    def _ensure(self) -> None:
        if self._dirty:
            self._rewire()

    def _rewire(self) -> None:
        """Rebuild edges from the HyperNode specs; cheap next to a solve, and only on structure changes."""
        self._dirty = False
        g: nx.DiGraph = nx.DiGraph()
        max_tier = max((h.tier for h in self.hypernodes.values()), default=0)
        g.add_node(ROOT, kind=HYPERNODE, tier=max_tier + 1)
        for spec in self.hypernodes.values():
            g.add_node(spec.name, kind=HYPERNODE, tier=spec.tier, tier_name=spec.tier_name)
        for name in self.nodes:
            g.add_node(name, kind=NODE)
        node_list = list(self.nodes.values())
        # Lower tiers claim nodes first, so a node matched by two selectors lands in its tightest domain.
        for spec in sorted(self.hypernodes.values(), key=lambda h: (h.tier, h.name)):
            for member in spec.members:
                if member.type == "HyperNode":
                    child = member.exact
                    if child not in self.hypernodes or child == spec.name:
                        continue
                    if g.in_degree(child) > 0:
                        continue  # Volcano: a child may have only one parent.
                    if self.hypernodes[child].tier >= spec.tier:
                        continue  # a member must sit in a lower tier; this also rules out cycles
                    g.add_edge(spec.name, child)
                else:
                    if member.exact is not None:
                        candidates = [self.nodes[member.exact]] if member.exact in self.nodes else []
                    else:
                        candidates = [n for n in node_list if member.matches_node(n)]
                    for node in candidates:
                        if g.in_degree(node.name) == 0:
                            g.add_edge(spec.name, node.name)
        for name in list(g.nodes):
            if name != ROOT and g.in_degree(name) == 0:
                g.add_edge(ROOT, name)
        self.graph = g
        self._parent = {child: parent for parent, child in g.edges}
        self._children = {n: list(g.successors(n)) for n in g.nodes}
        self._recompute_sums()

    def _recompute_sums(self) -> None:
        self._domain_alloc = {d: {} for d in self.domains()}
        self._domain_used = {d: {} for d in self.domains()}
        for name, info in self.nodes.items():
            used = self._node_used.get(name, {})
            for domain in self.ancestors(name):
                self._domain_alloc[domain] = add(self._domain_alloc[domain], info.allocatable)
                self._domain_used[domain] = add(self._domain_used[domain], used)

    # ----------------------------------------------------------------- pods
    def add_pod(self, key: str, node: str, request: Mapping[str, int]) -> None:
        """Count a pod bound or nominated to `node`; re-adding the same key moves it."""
        req = dict(request)
        if self._pods.get(key) == (node, req):
            return  # an update that changes nothing placement cares about
        if key in self._pods or key in self._pending_node:
            self.remove_pod(key)
        if node not in self.nodes:
            self._pending.setdefault(node, {})[key] = req
            self._pending_node[key] = node
            return
        self._pods[key] = (node, req)
        self._node_used[node] = add(self._node_used.get(node, {}), req)
        for domain in ([] if self._dirty else self.ancestors(node)):
            self._domain_used[domain] = add(self._domain_used[domain], req)
        self._generation += 1

    def remove_pod(self, key: str) -> None:
        pending_on = self._pending_node.pop(key, None)
        if pending_on is not None:
            waiting = self._pending[pending_on]
            del waiting[key]
            if not waiting:
                del self._pending[pending_on]
        entry = self._pods.pop(key, None)
        if entry is None:
            return
        node, req = entry
        if node in self.nodes:
            self._node_used[node] = sub(self._node_used[node], req)
            for domain in ([] if self._dirty else self.ancestors(node)):
                self._domain_used[domain] = sub(self._domain_used[domain], req)
        self._generation += 1

    def pod_node(self, key: str) -> str | None:
        """The node `key` is counted on, or held pending for until that node is added."""
        entry = self._pods.get(key)
        return entry[0] if entry else self._pending_node.get(key)

    # ----------------------------------------------------------------- queries
    def domains(self) -> list[str]:
        self._ensure()
        return [n for n, kind in self.graph.nodes(data="kind") if kind == HYPERNODE]

    def tier(self, domain: str) -> int:
        self._ensure()
        tier: int = self.graph.nodes[domain]["tier"]
        return tier

    @property
    def max_tier(self) -> int:
        """The tier of the virtual root (one above the highest real HyperNode)."""
        return self.tier(ROOT)

    def parent(self, name: str) -> str | None:
        self._ensure()
        return self._parent.get(name)

    def children(self, domain: str) -> list[str]:
        self._ensure()
        return self._children.get(domain, [])

    def ancestors(self, name: str) -> list[str]:
        """The domains above `name`, nearest first, ending with the virtual root."""
        out: list[str] = []
        current = self.parent(name)
        while current is not None:
            out.append(current)
            current = self.parent(current)
        if not out and name != ROOT:
            out.append(ROOT)
        return out

    def leaf_of(self, node: str) -> str:
        """The lowest domain that holds `node` (its tier-1 HyperNode, or the root for orphans)."""
        return self.ancestors(node)[0]

    def domain_nodes(self, domain: str) -> list[str]:
        out: list[str] = []
        stack = [domain]
        while stack:
            current = stack.pop()
            for child in self.children(current):
                if self.graph.nodes[child]["kind"] == NODE:
                    out.append(child)
                else:
                    stack.append(child)
        return sorted(out)

    def lca(self, nodes: Iterable[str]) -> tuple[str, int]:
        """The lowest common ancestor domain of `nodes` and its tier.

        One node's LCA is its leaf domain: two pods on one node still share that leaf's switch.
        """
        node_list = list(dict.fromkeys(nodes))
        if not node_list:
            raise ValueError("lca: needs at least one node")
        common: list[str] | None = None
        for name in node_list:
            if name not in self.nodes:
                raise ValueError(f"lca: unknown node {name!r}")
            chain = self.ancestors(name)
            if common is None:
                common = chain
            else:
                members = set(chain)
                common = [d for d in common if d in members]
        assert common
        return common[0], self.tier(common[0])

    def node_used(self, node: str) -> Resources:
        return dict(self._node_used.get(node, {}))

    def node_free(self, node: str) -> Resources:
        return sub(self.nodes[node].allocatable, self._node_used.get(node, {}))

    def allocatable(self, domain: str) -> Resources:
        self._ensure()
        if domain in self.nodes:
            return dict(self.nodes[domain].allocatable)
        return dict(self._domain_alloc.get(domain, {}))

    def used(self, domain: str) -> Resources:
        self._ensure()
        if domain in self.nodes:
            return self.node_used(domain)
        return dict(self._domain_used.get(domain, {}))

    def free(self, domain: str) -> Resources:
        return sub(self.allocatable(domain), self.used(domain))

    def tier_names(self) -> dict[str, int]:
        """HyperNode `tierName` -> tier (Volcano: the last one wins when two disagree)."""
        return {h.tier_name: h.tier for h in self.hypernodes.values() if h.tier_name}

    def describe(self) -> dict[str, Any]:
        self._ensure()
        """A small summary for logs and the CLI."""
        tiers: dict[int, int] = {}
        for d in self.domains():
            if d != ROOT:
                tiers[self.tier(d)] = tiers.get(self.tier(d), 0) + 1
        return {"nodes": len(self.nodes), "hypernodesPerTier": dict(sorted(tiers.items())),
                "pods": len(self._pods)}
