"""Topology spec (YAML) → KWOK Node and Volcano HyperNode manifests. Pure: no I/O but reading the file.

A spec describes a tree of switches, top tier first. Each tier gives how many switches sit
under each switch of the tier above (`count`; for the top tier, how many roots). The
bottom tier is tier 1 and holds `nodesPerLeaf` nodes per switch. Example (`small`):

    name: small
    tiers:
      - {tierName: spine, count: 1}
      - {tierName: leaf, count: 2}
    nodesPerLeaf: 4
    node: {gpus: 8, gpuType: NVIDIA-H100-80GB-HBM3, cpu: "96", memory: 1024Gi}

Node i gets pod CIDR `127.<n>.<i>.0/24` of its cluster's loopback pod network (see
`network`; 127.1.0.0/16 for the first cluster), so pod IPs are addresses this machine can
bind and reach.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
TOPOLOGY_LABEL = "caldera.dev/topology"
TIER_LABEL_PREFIX = "caldera.dev/"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
POD_NETWORK = ipaddress.IPv4Network("127.1.0.0/16")
TOPOLOGIES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local" / "topologies"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class NodeShape(_Model):
    gpus: int = Field(8, ge=0)
    gpu_type: str = "NVIDIA-H100-80GB-HBM3"
    cpu: str = "96"
    memory: str = "1024Gi"
    pods: int = Field(110, ge=1)
    labels: dict[str, str] = Field(default_factory=dict)


class NodeOverride(_Model):
    """Changes to the node shape for every node under one switch (by HyperNode name)."""

    gpus: int | None = Field(None, ge=0)
    gpu_type: str | None = None
    cpu: str | None = None
    memory: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Tier(_Model):
    tier_name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    count: int = Field(ge=1)


class TopologySpec(_Model):
    name: str = Field(min_length=1)
    node_prefix: str = Field("node", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    tiers: list[Tier] = Field(min_length=1)
    nodes_per_leaf: int = Field(ge=1)
    node: NodeShape = Field(default_factory=NodeShape)
    overrides: dict[str, NodeOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_pod_network(self) -> TopologySpec:
        names = [t.tier_name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tiers: tierName values must be unique, got {names}")
        if self.node_count > 256:
            raise ValueError(f"topology has {self.node_count} nodes; each node gets a /24 of {POD_NETWORK}, "
                             "so at most 256 nodes fit")
        return self

    @property
    def leaf_count(self) -> int:
        total = 1
        for tier in self.tiers:
            total *= tier.count
        return total

    @property
    def node_count(self) -> int:
        return self.leaf_count * self.nodes_per_leaf


class TopologyError(ValueError):
    pass


def load(name_or_path: str | Path) -> TopologySpec:
    """Load a topology by name (from deploy/local/topologies/) or by file path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = TOPOLOGIES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in TOPOLOGIES_DIR.glob("*.yaml"))
        raise TopologyError(f"topology {str(name_or_path)!r}: no such file (known names: {known})")
    return parse(yaml.safe_load(path.read_text()), source=str(path))


def parse(data: Any, source: str = "<topology>") -> TopologySpec:
    try:
        return TopologySpec.model_validate(data)
    except ValidationError as err:
        raise TopologyError(f"{source}: invalid topology spec:\n{err}") from err


def _tier_number(spec: TopologySpec, index_from_top: int) -> int:
    return len(spec.tiers) - index_from_top


def hypernode(name: str, tier: int, tier_name: str, member_type: str, members: list[str],
              topology: str) -> dict[str, Any]:
    return {
        "apiVersion": "topology.volcano.sh/v1alpha1",
        "kind": "HyperNode",
        "metadata": {"name": name, "labels": {TOPOLOGY_LABEL: topology}},
        "spec": {
            "tier": tier,
            "tierName": tier_name,
            "members": [{"type": member_type, "selector": {"exactMatch": {"name": m}}} for m in members],
        },
    }


def _node(spec: TopologySpec, index: int, ancestors: list[tuple[str, str]],
          network: ipaddress.IPv4Network) -> dict[str, Any]:
    shape = spec.node.model_copy(deep=True)
    extra_labels: dict[str, str] = {}
    for _, switch in ancestors:
        override = spec.overrides.get(switch)
        if override is None:
            continue
        for field in ("gpus", "gpu_type", "cpu", "memory"):
            value = getattr(override, field)
            if value is not None:
                setattr(shape, field, value)
        extra_labels.update(override.labels)
    name = f"{spec.node_prefix}-{index}"
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods), GPU_RESOURCE: str(shape.gpus)}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        TOPOLOGY_LABEL: spec.name,
        GPU_PRODUCT_LABEL: shape.gpu_type,
        "nvidia.com/gpu.count": str(shape.gpus),
        **{TIER_LABEL_PREFIX + tier_name: switch for tier_name, switch in ancestors},
        **shape.labels,
        **extra_labels,
    }
    cidr = list(network.subnets(new_prefix=24))[index]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
        "spec": {"podCIDR": str(cidr), "podCIDRs": [str(cidr)]},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def render(spec: TopologySpec, network: ipaddress.IPv4Network = POD_NETWORK,
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Node and HyperNode manifests for a topology, nodes in index order, HyperNodes bottom-up.
    Node i gets the i-th /24 of `network` as its pod CIDR."""
    if network.prefixlen > 16:
        raise TopologyError(f"pod network {network}: need a /16 or larger (one /24 per node)")
    nodes: list[dict[str, Any]] = []
    by_tier: list[list[dict[str, Any]]] = [[] for _ in spec.tiers]
    counters = [0] * len(spec.tiers)

    def expand(level: int, ancestors: list[tuple[str, str]]) -> str:
        tier = spec.tiers[level]
        name = f"{tier.tier_name}-{counters[level]}"
        counters[level] += 1
        chain = [*ancestors, (tier.tier_name, name)]
        if level == len(spec.tiers) - 1:
            members = []
            for _ in range(spec.nodes_per_leaf):
                node = _node(spec, len(nodes), chain, network)
                nodes.append(node)
                members.append(node["metadata"]["name"])
            by_tier[level].append(hypernode(name, 1, tier.tier_name, "Node", members, spec.name))
        else:
            children = [expand(level + 1, chain) for _ in range(spec.tiers[level + 1].count)]
            by_tier[level].append(hypernode(name, _tier_number(spec, level), tier.tier_name, "HyperNode",
                                            children, spec.name))
        return name

    for _ in range(spec.tiers[0].count):
        expand(0, [])
    hypernodes = [hn for level in reversed(by_tier) for hn in level]
    unknown = set(spec.overrides) - {hn["metadata"]["name"] for hn in hypernodes}
    if unknown:
        raise TopologyError(f"overrides: no switch named {sorted(unknown)} in topology {spec.name!r}")
    return nodes, hypernodes
