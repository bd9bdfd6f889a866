"""The Volcano re-implementation behaves like Volcano's gradient allocation."""

from placement.model import Gang, PodRequest, RoleReplica, TopologyPolicy
from placement.snapshot import Snapshot
from placement.volcano_baseline import VolcanoConfig, volcano_allocate
from topology.graph import HyperNodeSpec, MemberSelector, NodeInfo, Topology
from topology.resources import CPU, GPU, MEMORY


def snapshot(used: dict[str, int]) -> Snapshot:
    nodes = [NodeInfo(f"n{i}", {GPU: 8, CPU: 64000, MEMORY: 512 * 2**30}) for i in range(4)]
    hns = [
        HyperNodeSpec("s0", 1, (MemberSelector("Node", exact="n0"), MemberSelector("Node", exact="n1"))),
        HyperNodeSpec("s1", 1, (MemberSelector("Node", exact="n2"), MemberSelector("Node", exact="n3"))),
        HyperNodeSpec("s2", 2, (MemberSelector("HyperNode", exact="s0"), MemberSelector("HyperNode", exact="s1"))),
    ]
    topo = Topology.build(nodes, hns)
    for node, gpus in used.items():
        topo.add_pod(f"x/{node}", node, {GPU: gpus, CPU: gpus * 8000, MEMORY: gpus * 64 * 2**30})
    return Snapshot.from_topology(topo)


def job(name: str, pods: int, gpus: int, tier: int) -> Gang:
    rr = RoleReplica("w", 0, tuple(PodRequest(f"{name}-{i}", {GPU: gpus, CPU: gpus * 8000}) for i in range(pods)))
    return Gang(name, (rr,), TopologyPolicy("hard", tier))


def test_a_job_that_fits_in_a_tier_1_hypernode_stays_inside_one() -> None:
    placed = volcano_allocate(snapshot({}), [job("j", 2, 8, 2)])
    assert set(placed["j"].values()) in ({"n0", "n1"}, {"n2", "n3"})


def test_the_fuller_hypernode_wins_by_hypernode_binpack() -> None:
    placed = volcano_allocate(snapshot({"n0": 2}), [job("j", 1, 4, 1)])
    assert placed["j"]["j-0"] in {"n0", "n1"}


def test_a_job_beyond_its_tier_limit_stays_pending() -> None:
    assert volcano_allocate(snapshot({}), [job("j", 3, 8, 1)]) == {}


def test_binpack_gpu_node_order_fills_the_partly_used_node() -> None:
    config = VolcanoConfig.local_cluster()
    placed = volcano_allocate(snapshot({"n0": 4}), [job("j", 1, 4, 1)], config)
    assert placed["j"]["j-0"] == "n0"
