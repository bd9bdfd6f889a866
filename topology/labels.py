"""HyperNodes discovered from node labels, the way Volcano's `label` discovery source does it.

`label_keys` lists the topology labels from the top tier down, optionally ending with
`kubernetes.io/hostname` (the nodes themselves). The last non-hostname key becomes tier 1,
whose HyperNodes hold the nodes; each key above it becomes the next tier up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from topology.graph import HyperNodeSpec, MemberSelector, NodeInfo, Topology

HOSTNAME = "kubernetes.io/hostname"


def hypernodes_from_labels(nodes: Iterable[NodeInfo], label_keys: Sequence[str]) -> list[HyperNodeSpec]:
    keys = [k for k in label_keys if k != HOSTNAME]
    if not keys:
        raise ValueError("label_keys: at least one topology label other than kubernetes.io/hostname is needed")
    tiers = {key: len(keys) - i for i, key in enumerate(keys)}  # top key = highest tier
    members: dict[str, set[tuple[str, str]]] = {}
    tier_of: dict[str, int] = {}
    tier_name: dict[str, str] = {}
    for node in nodes:
        path = [node.labels.get(k) for k in keys]
        if any(v is None for v in path):
            continue  # Volcano skips nodes missing any topology label.
        names = [_name(keys[i], path[: i + 1]) for i in range(len(keys))]  # type: ignore[arg-type]
        for i, name in enumerate(names):
            tier_of[name] = tiers[keys[i]]
            tier_name[name] = keys[i]
            child = ("Node", node.name) if i == len(names) - 1 else ("HyperNode", names[i + 1])
            members.setdefault(name, set()).add(child)
    return [
        HyperNodeSpec(
            name=name,
            tier=tier_of[name],
            tier_name=tier_name[name],
            members=tuple(MemberSelector(type=kind, exact=child) for kind, child in sorted(members[name])),
        )
        for name in sorted(members)
    ]


def _name(key: str, path: Sequence[str]) -> str:
    short = key.rsplit("/", 1)[-1]
    return "-".join([short, *path]).lower().replace("_", "-").replace(".", "-")


def topology_from_labels(nodes: Sequence[NodeInfo], label_keys: Sequence[str]) -> Topology:
    return Topology.build(nodes, hypernodes_from_labels(nodes, label_keys))
