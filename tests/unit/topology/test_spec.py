from pathlib import Path

import pytest

from topology.graph import NodeInfo
from topology.labels import topology_from_labels
from topology.resources import GPU
from topology.spec import GPU_PRODUCT_LABEL, TopologySpec, load_spec


def test_a_generated_spec_builds_the_rack_256_shape() -> None:
    spec = TopologySpec.model_validate({
        "tiers": [{"name": "core", "count": 1}, {"name": "spine", "count": 4}, {"name": "leaf", "count": 8}],
        "nodesPerLeaf": 8,
    })
    topo = spec.topology()
    assert topo.describe()["hypernodesPerTier"] == {1: 32, 2: 4, 3: 1}
    assert topo.allocatable("core-0")[GPU] == 256 * 8


def test_an_explicit_spec_keeps_named_nodes_and_hypernodes() -> None:
    spec = TopologySpec.model_validate({
        "nodeDefaults": {"gpus": 4, "gpuType": "A100"},
        "hypernodes": [
            {"name": "s2", "tier": 2, "children": ["s0", "s1"]},
            {"name": "s0", "tier": 1, "nodes": ["node0", "node1"]},
            {"name": "s1", "tier": 1, "nodes": ["node2", {"name": "node3", "gpus": 8}]},
        ],
    })
    topo = spec.topology()
    assert topo.lca(["node0", "node3"]) == ("s2", 2)
    assert topo.nodes["node3"].allocatable[GPU] == 8
    assert topo.nodes["node0"].labels[GPU_PRODUCT_LABEL] == "A100"


def test_an_unknown_child_hypernode_is_named_in_the_error() -> None:
    spec = TopologySpec.model_validate({"hypernodes": [{"name": "s2", "tier": 2, "children": ["ghost"]}]})
    with pytest.raises(ValueError, match="ghost"):
        spec.expand()


def test_tiers_without_nodes_per_leaf_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tiers: [{name: leaf, count: 2}]\n")
    with pytest.raises(ValueError, match="nodesPerLeaf"):
        load_spec(path)


def test_spec_objects_are_nodes_with_gpu_capacity_and_hypernodes_with_exact_members() -> None:
    spec = TopologySpec.model_validate({"tiers": [{"name": "leaf", "count": 1}], "nodesPerLeaf": 2})
    nodes, hypernodes = spec.kubernetes_objects()
    assert nodes[0]["status"]["capacity"][GPU] == "8"
    assert hypernodes[0]["spec"]["members"][1]["selector"] == {"exactMatch": {"name": "node-1"}}


def test_label_discovery_builds_one_tier_per_label_key() -> None:
    nodes = [NodeInfo(f"n{i}", {GPU: 8}, {"spine": f"s{i // 4}", "rack": f"r{i // 2}"}) for i in range(8)]
    topo = topology_from_labels(nodes, ["spine", "rack", "kubernetes.io/hostname"])
    assert topo.lca(["n0", "n1"])[1] == 1
    assert topo.lca(["n0", "n2"])[1] == 2
    assert topo.lca(["n0", "n4"])[1] == 3
