"""Topology spec files: tiers of switches down to nodes with their GPUs, CPU and memory.

Two shapes are accepted, and may be combined:

Generated (a regular tree, top tier first)::

    name: rack-256
    nodeDefaults: {gpus: 8, gpuType: NVIDIA-H100, cpu: "96", memory: 1024Gi}
    tiers:
      - {name: core, count: 1}      # the top tier: how many switches
      - {name: spine, count: 4}     # children per parent switch
      - {name: leaf, count: 8}
    nodesPerLeaf: 8

Explicit::

    hypernodes:
      - {name: s2, tier: 2, children: [s0, s1]}
      - {name: s0, tier: 1, nodes: [node-0, node-1]}
    nodes:
      - {name: node-0, gpus: 8}

The local cluster's files (`deploy/local/topologies/*.yaml`: `tiers[].tierName`, `node`,
`nodePrefix`) read the same way. Node fields: `name`, `gpus`, `gpuType` (label `nvidia.com/gpu.product`), `cpu`, `memory`,
`labels`, `resources` (any extra allocatable). Unknown top-level keys are ignored, so the
local-cluster harness can keep its own settings in the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from topology.graph import HyperNodeSpec, MemberSelector, NodeInfo, Taint, Topology
from topology.resources import CPU, GPU, MEMORY, PODS, parse_resources

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
HOSTNAME_LABEL = "kubernetes.io/hostname"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class NodeTemplate(_Model):
    gpus: int = Field(8, ge=0)
    gpu_type: str | None = Field(None, alias="gpuType")
    gpu_resource: str = Field(GPU, alias="gpuResource")
    cpu: str | int = "64"
    memory: str = "512Gi"
    max_pods: int = Field(110, validation_alias=AliasChoices("maxPods", "pods", "max_pods"), ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, str | int] = Field(default_factory=dict)
    taints: list[dict[str, str]] = Field(default_factory=list)


class NodeEntry(NodeTemplate):
    name: str


class TierLevel(_Model):
    name: str = Field(validation_alias=AliasChoices("name", "tierName"))
    count: int = Field(ge=1)


class HyperNodeEntry(_Model):
    name: str
    tier: int = Field(ge=1)
    tier_name: str | None = Field(None, alias="tierName")
    children: list[str] = Field(default_factory=list)
    nodes: list[str | NodeEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_members(self) -> HyperNodeEntry:
        if not self.children and not self.nodes:
            raise ValueError(f"hypernode {self.name}: needs children or nodes")
        return self


class TopologySpec(_Model):
    name: str = "topology"
    node_defaults: NodeTemplate = Field(default_factory=NodeTemplate,
                                        validation_alias=AliasChoices("nodeDefaults", "node", "node_defaults"))
    tiers: list[TierLevel] = Field(default_factory=list)
    nodes_per_leaf: int | None = Field(None, alias="nodesPerLeaf", ge=1)
    node_name_prefix: str = Field("node", validation_alias=AliasChoices("nodeNamePrefix", "nodePrefix",
                                                                        "node_name_prefix"))
    hypernodes: list[HyperNodeEntry] = Field(default_factory=list)
    nodes: list[NodeEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> TopologySpec:
        if self.tiers and self.nodes_per_leaf is None:
            raise ValueError("nodesPerLeaf: required when tiers are given")
        if not self.tiers and not self.hypernodes and not self.nodes:
            raise ValueError("a topology spec needs tiers (with nodesPerLeaf), hypernodes or nodes")
        return self

    # ------------------------------------------------------------------ expansion
    def expand(self) -> tuple[list[NodeInfo], list[HyperNodeSpec]]:
        nodes: dict[str, NodeInfo] = {}
        hypernodes: list[HyperNodeSpec] = []
        defaults = self.node_defaults.model_dump(by_alias=True)
        for entry in self.nodes:
            nodes[entry.name] = _node_info(entry)
        if self.tiers:
            assert self.nodes_per_leaf is not None
            hypernodes.extend(self._generate(nodes, defaults))
        for hn in self.hypernodes:
            members = [MemberSelector(type="HyperNode", exact=c) for c in hn.children]
            for item in hn.nodes:
                if isinstance(item, str):
                    if item not in nodes:
                        nodes[item] = _node_info(NodeEntry.model_validate({**defaults, "name": item}))
                    members.append(MemberSelector(type="Node", exact=item))
                else:
                    nodes[item.name] = _node_info(item)
                    members.append(MemberSelector(type="Node", exact=item.name))
            hypernodes.append(HyperNodeSpec(name=hn.name, tier=hn.tier, tier_name=hn.tier_name,
                                            members=tuple(members)))
        known = {h.name for h in hypernodes}
        for spec in hypernodes:
            for member in spec.members:
                if member.type == "HyperNode" and member.exact not in known:
                    raise ValueError(f"hypernodes[{spec.name}].children: unknown hypernode {member.exact!r}")
        return list(nodes.values()), hypernodes

    def _generate(self, nodes: dict[str, NodeInfo], defaults: dict[str, Any]) -> list[HyperNodeSpec]:
        assert self.nodes_per_leaf is not None
        levels = self.tiers
        top_tier = len(levels)
        out: list[HyperNodeSpec] = []
        # Walk the tree level by level; each level's switches are numbered globally.
        parents: list[str | None] = [None]
        node_index = 0
        for depth, level in enumerate(levels):
            tier = top_tier - depth
            current: list[str | None] = []
            children_of: dict[str | None, list[str]] = {}
            counter = 0
            for parent in parents:
                for _ in range(level.count):
                    name = f"{level.name}-{counter}"
                    counter += 1
                    current.append(name)
                    children_of.setdefault(parent, []).append(name)
            if depth > 0:
                for parent, kids in children_of.items():
                    assert parent is not None
                    _replace_members(out, parent, [MemberSelector(type="HyperNode", exact=k) for k in kids])
            for switch in current:
                assert switch is not None
                out.append(HyperNodeSpec(name=switch, tier=tier, tier_name=level.name, members=()))
            parents = current
        for leaf in parents:
            assert leaf is not None
            members = []
            for _ in range(self.nodes_per_leaf):
                name = f"{self.node_name_prefix}-{node_index}"
                node_index += 1
                entry = NodeEntry.model_validate({**defaults, "name": name})
                nodes[name] = _node_info(entry)
                members.append(MemberSelector(type="Node", exact=name))
            _replace_members(out, leaf, members)
        return out

    def topology(self) -> Topology:
        nodes, hypernodes = self.expand()
        return Topology.build(nodes, hypernodes)

    # ------------------------------------------------------------------ Kubernetes objects
    def kubernetes_objects(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Node and HyperNode manifests (`status` of the Nodes carries their capacity)."""
        nodes, hypernodes = self.expand()
        return [node_object(n) for n in nodes], [hypernode_object(h) for h in hypernodes]


def _replace_members(out: list[HyperNodeSpec], name: str, members: list[MemberSelector]) -> None:
    for i, hn in enumerate(out):
        if hn.name == name:
            out[i] = HyperNodeSpec(name=hn.name, tier=hn.tier, tier_name=hn.tier_name, members=tuple(members))
            return


def _node_info(entry: NodeEntry) -> NodeInfo:
    raw: dict[str, Any] = {CPU: entry.cpu, MEMORY: entry.memory, PODS: entry.max_pods, **entry.resources}
    if entry.gpus:
        raw[entry.gpu_resource] = entry.gpus
    labels = {HOSTNAME_LABEL: entry.name, **entry.labels}
    if entry.gpu_type:
        labels[GPU_PRODUCT_LABEL] = entry.gpu_type
    taints = tuple(Taint(key=t["key"], value=t.get("value", ""), effect=t.get("effect", "NoSchedule"))
                   for t in entry.taints)
    return NodeInfo(name=entry.name, allocatable=parse_resources(raw), labels=labels, taints=taints)


def node_object(node: NodeInfo) -> dict[str, Any]:
    capacity = {k: (f"{v}m" if k == CPU else str(v)) for k, v in node.allocatable.items()}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": dict(node.labels)},
        "spec": {"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in node.taints]},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def hypernode_object(hn: HyperNodeSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tier": hn.tier,
        "members": [{"type": m.type, "selector": {"exactMatch": {"name": m.exact}}} for m in hn.members],
    }
    if hn.tier_name:
        spec["tierName"] = hn.tier_name
    return {"apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode",
            "metadata": {"name": hn.name}, "spec": spec}


def load_spec(path: str | Path) -> TopologySpec:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"topology spec {path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"topology spec {path}: expected a mapping at the top level")
    try:
        return TopologySpec.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"topology spec {path}: {exc}") from exc


def load_topology(path: str | Path) -> Topology:
    return load_spec(path).topology()
