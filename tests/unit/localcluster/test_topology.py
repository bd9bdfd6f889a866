from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from caldera.localcluster import topology


def _members(hn: dict) -> list[str]:
    return [m["selector"]["exactMatch"]["name"] for m in hn["spec"]["members"]]


def test_small_has_eight_nodes_with_eight_gpus() -> None:
    nodes, _ = topology.render(topology.load("small"))
    assert [n["status"]["capacity"]["nvidia.com/gpu"] for n in nodes] == ["8"] * 8


def test_small_has_two_leaves_of_four_nodes_under_one_spine() -> None:
    _, hypernodes = topology.render(topology.load("small"))
    by_name = {h["metadata"]["name"]: h for h in hypernodes}
    assert _members(by_name["leaf-0"]) == ["node-0", "node-1", "node-2", "node-3"]
    assert _members(by_name["leaf-1"]) == ["node-4", "node-5", "node-6", "node-7"]
    assert by_name["spine-0"]["spec"]["tier"] == 2
    assert _members(by_name["spine-0"]) == ["leaf-0", "leaf-1"]


def test_rack_256_has_32_leaves_4_spines_1_core() -> None:
    nodes, hypernodes = topology.render(topology.load("rack-256"))
    tiers = [h["spec"]["tier"] for h in hypernodes]
    assert (len(nodes), tiers.count(1), tiers.count(2), tiers.count(3)) == (256, 32, 4, 1)


def test_each_node_gets_its_own_loopback_pod_cidr() -> None:
    nodes, _ = topology.render(topology.load("rack-256"))
    cidrs = [n["spec"]["podCIDR"] for n in nodes]
    assert cidrs[0] == "127.1.0.0/24" and cidrs[255] == "127.1.255.0/24" and len(set(cidrs)) == 256


def test_nodes_are_labelled_with_their_switches() -> None:
    nodes, _ = topology.render(topology.load("small"))
    assert nodes[5]["metadata"]["labels"]["caldera.dev/leaf"] == "leaf-1"
    assert nodes[5]["metadata"]["labels"]["caldera.dev/spine"] == "spine-0"


def test_nodes_are_marked_for_kwok() -> None:
    nodes, _ = topology.render(topology.load("small"))
    assert all(n["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"} for n in nodes)


def test_override_changes_gpu_type_under_a_switch() -> None:
    spec = topology.parse({"name": "mixed", "tiers": [{"tierName": "leaf", "count": 2}], "nodesPerLeaf": 1,
                           "overrides": {"leaf-1": {"gpuType": "A100", "gpus": 4}}})
    nodes, _ = topology.render(spec)
    assert [n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in nodes] == ["NVIDIA-H100-80GB-HBM3", "A100"]
    assert nodes[1]["status"]["allocatable"]["nvidia.com/gpu"] == "4"


def test_override_of_unknown_switch_is_rejected() -> None:
    spec = topology.parse({"name": "x", "tiers": [{"tierName": "leaf", "count": 1}], "nodesPerLeaf": 1,
                           "overrides": {"leaf-9": {"gpus": 1}}})
    with pytest.raises(topology.TopologyError, match="leaf-9"):
        topology.render(spec)


def test_more_than_256_nodes_is_rejected_naming_the_limit() -> None:
    with pytest.raises(topology.TopologyError, match="at most 256 nodes"):
        topology.parse({"name": "big", "tiers": [{"tierName": "leaf", "count": 33}], "nodesPerLeaf": 8})


def test_missing_field_error_names_the_field() -> None:
    with pytest.raises(topology.TopologyError, match="nodesPerLeaf"):
        topology.parse({"name": "x", "tiers": [{"tierName": "leaf", "count": 1}]})


def test_unknown_topology_name_lists_known_ones() -> None:
    with pytest.raises(topology.TopologyError, match="small"):
        topology.load("no-such-topology")


def test_pod_cidrs_come_from_the_given_network() -> None:
    nodes, _ = topology.render(topology.load("small"), ipaddress.IPv4Network("127.7.0.0/16"))
    assert nodes[3]["spec"]["podCIDR"] == "127.7.3.0/24"


def test_topology_loads_from_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\ntiers: [{tierName: leaf, count: 1}]\nnodesPerLeaf: 2\n")
    nodes, hypernodes = topology.render(topology.load(path))
    assert (len(nodes), [h["metadata"]["name"] for h in hypernodes]) == (2, ["leaf-0"])
