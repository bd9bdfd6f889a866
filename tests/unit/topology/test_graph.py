import pytest

from topology.graph import ROOT, HyperNodeSpec, MemberSelector, NodeInfo, Topology
from topology.resources import GPU


def node(name: str, gpus: int = 8, **labels: str) -> NodeInfo:
    return NodeInfo(name=name, allocatable={GPU: gpus, "cpu": 64000}, labels=dict(labels))


def exact(kind: str, *names: str) -> tuple[MemberSelector, ...]:
    return tuple(MemberSelector(type=kind, exact=n) for n in names)


@pytest.fixture
def small() -> Topology:
    """The Kthena guide's shape: s0 = {n0, n1}, s1 = {n2, n3} under s2."""
    return Topology.build(
        [node(f"n{i}") for i in range(4)],
        [
            HyperNodeSpec("s0", 1, exact("Node", "n0", "n1")),
            HyperNodeSpec("s1", 1, exact("Node", "n2", "n3")),
            HyperNodeSpec("s2", 2, exact("HyperNode", "s0", "s1")),
        ],
    )


def test_lca_of_nodes_in_one_leaf_is_that_tier_1_hypernode(small: Topology) -> None:
    assert small.lca(["n0", "n1"]) == ("s0", 1)


def test_lca_of_nodes_in_two_leaves_is_their_tier_2_parent(small: Topology) -> None:
    assert small.lca(["n1", "n2"]) == ("s2", 2)


def test_lca_of_a_single_node_is_its_leaf(small: Topology) -> None:
    assert small.lca(["n3"]) == ("s1", 1)


def test_virtual_root_sits_one_tier_above_the_highest_hypernode(small: Topology) -> None:
    assert small.max_tier == 3
    assert small.parent("s2") == ROOT


def test_leaf_of_a_node_is_its_tier_1_hypernode(small: Topology) -> None:
    assert small.leaf_of("n2") == "s1"


def test_free_capacity_of_a_domain_subtracts_the_pods_on_its_nodes(small: Topology) -> None:
    small.add_pod("default/a", "n0", {GPU: 3})
    small.add_pod("default/b", "n2", {GPU: 8})
    assert small.free("s0")[GPU] == 13
    assert small.free("s2")[GPU] == 21
    assert small.allocatable("s2")[GPU] == 32


def test_removing_a_pod_gives_its_capacity_back(small: Topology) -> None:
    small.add_pod("default/a", "n0", {GPU: 3})
    small.remove_pod("default/a")
    assert small.free("s0")[GPU] == 16


def test_re_adding_a_pod_moves_it_instead_of_counting_it_twice(small: Topology) -> None:
    small.add_pod("default/a", "n0", {GPU: 3})
    small.add_pod("default/a", "n2", {GPU: 3})
    assert small.free("s0")[GPU] == 16
    assert small.free("s1")[GPU] == 13


def test_removing_a_node_drops_its_capacity_from_every_domain(small: Topology) -> None:
    small.remove_node("n1")
    assert small.domain_nodes("s0") == ["n0"]
    assert small.allocatable("s2")[GPU] == 24


def test_a_node_added_later_joins_the_hypernode_whose_regex_matches_it() -> None:
    topo = Topology.build([node("gpu-a")], [HyperNodeSpec("rack", 1, (MemberSelector(type="Node", regex="^gpu-"),))])
    topo.upsert_node(node("gpu-b"))
    topo.upsert_node(node("cpu-c"))
    assert topo.domain_nodes("rack") == ["gpu-a", "gpu-b"]
    assert topo.leaf_of("cpu-c") == ROOT


def test_label_match_members_select_nodes_by_label() -> None:
    topo = Topology.build(
        [node("a", rack="r1"), node("b", rack="r2")],
        [HyperNodeSpec("r1", 1, (MemberSelector(type="Node", labels=(("rack", "r1"),)),))],
    )
    assert topo.domain_nodes("r1") == ["a"]


def test_relabelling_a_node_moves_it_between_label_matched_hypernodes() -> None:
    topo = Topology.build(
        [node("a", rack="r1")],
        [HyperNodeSpec(r, 1, (MemberSelector(type="Node", labels=(("rack", r),)),)) for r in ("r1", "r2")],
    )
    topo.upsert_node(node("a", rack="r2"))
    assert topo.leaf_of("a") == "r2"


def test_a_selector_with_two_kinds_of_match_is_rejected() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        MemberSelector(type="Node", exact="a", regex="a")


def test_hypernode_members_by_regex_are_rejected_as_volcano_does() -> None:
    with pytest.raises(ValueError, match="exactMatch"):
        MemberSelector(type="HyperNode", regex="s.*")


def test_a_child_hypernode_keeps_its_first_parent_only() -> None:
    topo = Topology.build(
        [node("n0")],
        [
            HyperNodeSpec("leaf", 1, exact("Node", "n0")),
            HyperNodeSpec("a", 2, exact("HyperNode", "leaf")),
            HyperNodeSpec("b", 2, exact("HyperNode", "leaf")),
        ],
    )
    assert topo.parent("leaf") == "a"


def test_lca_of_an_unknown_node_is_an_error(small: Topology) -> None:
    with pytest.raises(ValueError, match="unknown node"):
        small.lca(["nope"])


def test_pods_counted_before_their_hypernode_arrives_are_in_its_free_capacity() -> None:
    topo = Topology()
    topo.upsert_node(node("n0"))
    topo.add_pod("default/a", "n0", {GPU: 5})
    topo.upsert_hypernode(HyperNodeSpec("leaf", 1, exact("Node", "n0")))
    assert topo.free("leaf")[GPU] == 3


def test_an_update_that_changes_nothing_keeps_the_generation() -> None:
    topo = Topology.build([node("n0")], [HyperNodeSpec("leaf", 1, exact("Node", "n0"))])
    topo.add_pod("default/a", "n0", {GPU: 1})
    before = topo.generation
    topo.add_pod("default/a", "n0", {GPU: 1})
    assert topo.generation == before


def test_a_pod_listed_before_its_node_is_counted_once_the_node_appears(small: Topology) -> None:
    small.add_pod("default/early", "n4", {GPU: 5})
    small.upsert_node(node("n4"))
    assert small.node_used("n4")[GPU] == 5
    assert small.free(ROOT)[GPU] == 35


def test_a_pod_removed_before_its_node_appears_is_not_counted(small: Topology) -> None:
    small.add_pod("default/early", "n4", {GPU: 5})
    small.remove_pod("default/early")
    small.upsert_node(node("n4"))
    assert small.free(ROOT)[GPU] == 40


def test_a_pod_moved_off_a_missing_node_is_counted_only_where_it_went(small: Topology) -> None:
    small.add_pod("default/early", "n4", {GPU: 5})
    small.add_pod("default/early", "n0", {GPU: 5})
    small.upsert_node(node("n4"))
    assert small.node_used("n4").get(GPU, 0) == 0
    assert small.free(ROOT)[GPU] == 35
