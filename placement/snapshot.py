"""A frozen, plain-data view of the cluster for one planning round.

The solver never touches the live `Topology`: it works on a `Snapshot` (domain tree, leaf
domain of each node, free capacity per node), so a plan is a pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from topology.graph import ROOT, NodeInfo, Topology
from topology.resources import Resources, add, sub


@dataclass
class Snapshot:
    nodes: dict[str, NodeInfo]
    free: dict[str, Resources]  # per node
    parent: dict[str, str]  # domain -> parent domain (the root has none)
    tier: dict[str, int]  # domain -> tier
    leaf_of: dict[str, str]  # node -> the lowest domain holding it
    root: str = ROOT
    _children: dict[str, list[str]] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_topology(cls, topo: Topology) -> Snapshot:
        domains = topo.domains()
        return cls(
            nodes={name: info for name, info in topo.nodes.items()},
            free={name: topo.node_free(name) for name in topo.nodes},
            parent={d: p for d in domains if (p := topo.parent(d)) is not None},
            tier={d: topo.tier(d) for d in domains},
            leaf_of={name: topo.leaf_of(name) for name in topo.nodes},
        )

    def with_usage(self, usage: Mapping[str, Resources]) -> Snapshot:
        """The same cluster with `usage` (per node) taken from the free capacity."""
        free = {n: sub(f, usage[n]) if n in usage else dict(f) for n, f in self.free.items()}
        return Snapshot(self.nodes, free, self.parent, self.tier, self.leaf_of, self.root)

    # ----------------------------------------------------------------- structure
    @cached_property
    def leaves(self) -> list[str]:
        return sorted(set(self.leaf_of.values()))

    @cached_property
    def leaf_nodes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for node in sorted(self.nodes):
            out.setdefault(self.leaf_of[node], []).append(node)
        return out

    @cached_property
    def domains(self) -> list[str]:
        return sorted(self.tier, key=lambda d: (self.tier[d], d))

    @cached_property
    def max_tier(self) -> int:
        return self.tier[self.root]

    def ancestors(self, domain: str) -> list[str]:
        """`domain` itself, then every domain above it up to the root."""
        out = [domain]
        while out[-1] in self.parent:
            out.append(self.parent[out[-1]])
        return out

    @cached_property
    def _ancestors(self) -> dict[str, list[str]]:
        return {d: self.ancestors(d) for d in self.tier}

    def chain(self, domain: str) -> list[str]:
        return self._ancestors[domain]

    @cached_property
    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {d: [] for d in self.tier}
        for child, parent in self.parent.items():
            out[parent].append(child)
        return out

    @cached_property
    def leaves_under(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {d: [] for d in self.tier}
        for leaf in self.leaves:
            for d in self.chain(leaf):
                out[d].append(leaf)
        return out

    def domain_nodes(self, domain: str) -> list[str]:
        return [n for leaf in self.leaves_under[domain] for n in self.leaf_nodes[leaf]]

    def lca(self, nodes: Iterable[str]) -> str:
        common: list[str] | None = None
        for node in nodes:
            chain = self.chain(self.leaf_of[node])
            if common is None:
                common = chain
            else:
                keep = set(chain)
                common = [d for d in common if d in keep]
        if not common:
            raise ValueError("lca: needs at least one node")
        return common[0]

    def lca_of_domains(self, a: str, b: str) -> str:
        chain_b = set(self.chain(b))
        for d in self.chain(a):
            if d in chain_b:
                return d
        return self.root

    def lca_tier(self, nodes: Iterable[str]) -> int:
        return self.tier[self.lca(nodes)]

    def anchor(self, leaf: str, tier: int) -> str | None:
        """The largest domain holding `leaf` whose tier is ≤ `tier` (None if even the leaf is above)."""
        best = None
        for d in self.chain(leaf):
            if self.tier[d] <= tier:
                best = d
            else:
                break
        return best

    def domains_within(self, tier: int) -> list[str]:
        """Every domain that can serve as a placement anchor under a `tier` bound."""
        return [d for d in self.domains if self.tier[d] <= tier and self.leaves_under[d]]

    # ----------------------------------------------------------------- capacity
    def domain_free(self, domain: str) -> Resources:
        out: Resources = {}
        for node in self.domain_nodes(domain):
            out = add(out, self.free[node])
        return out

    def domain_allocatable(self, domain: str) -> Resources:
        out: Resources = {}
        for node in self.domain_nodes(domain):
            out = add(out, self.nodes[node].allocatable)
        return out
