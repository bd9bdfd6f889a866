"""solve(): hand-checked optima, brute-force optima on small clusters, reasons, objective levels."""

import itertools
import random

import pytest

from placement.constraints import violations
from placement.model import Gang, PodRequest, RoleReplica, Scheduling, Toleration, TopologyPolicy
from placement.snapshot import Snapshot
from placement.solver import SolveOptions, solve
from topology.graph import HyperNodeSpec, MemberSelector, NodeInfo, Taint, Topology
from topology.resources import GPU, fits


def cluster(leaves: list[list[int]], free: dict[str, int] | None = None, tiers: int = 2,
            labels: dict[str, dict[str, str]] | None = None, taints: dict[str, Taint] | None = None) -> Snapshot:
    """`leaves` lists each tier-1 leaf's node GPU counts; two leaves per tier-2 switch when tiers == 3."""
    nodes, hns = [], []
    for li, leaf in enumerate(leaves):
        names = []
        for ni, gpus in enumerate(leaf):
            name = f"n{li}{ni}"
            names.append(name)
            nodes.append(NodeInfo(name, {GPU: gpus}, (labels or {}).get(name, {}),
                                  (taints[name],) if taints and name in taints else ()))
        hns.append(HyperNodeSpec(f"leaf{li}", 1, tuple(MemberSelector("Node", exact=n) for n in names)))
    if tiers == 2:
        hns.append(HyperNodeSpec("spine", 2, tuple(MemberSelector("HyperNode", exact=h.name) for h in list(hns))))
    else:
        for si in range((len(leaves) + 1) // 2):
            kids = [f"leaf{li}" for li in (2 * si, 2 * si + 1) if li < len(leaves)]
            hns.append(HyperNodeSpec(f"spine{si}", 2, tuple(MemberSelector("HyperNode", exact=k) for k in kids)))
        hns.append(HyperNodeSpec("core", 3, tuple(MemberSelector("HyperNode", exact=h.name)
                                                  for h in list(hns) if h.tier == 2)))
    topo = Topology.build(nodes, hns)
    for node, used in (free or {}).items():
        topo.add_pod(f"x/{node}", node, {GPU: used})
    return Snapshot.from_topology(topo)


def gang(name: str, roles: list[tuple[str, int, int, int]], group_tier: int | None = 2, role_tier: int | None = 1,
         priority: int = 0, scheduling: Scheduling = Scheduling()) -> Gang:
    """roles: (role, replicas, pods per replica, GPUs per pod)."""
    replicas = tuple(
        RoleReplica(role, i, tuple(PodRequest(f"{name}-{role}-{i}-{k}", {GPU: gpus}, scheduling) for k in range(pods)))
        for role, count, pods, gpus in roles for i in range(count)
    )
    return Gang(name, replicas,
                TopologyPolicy("hard", group_tier) if group_tier else None,
                TopologyPolicy("hard", role_tier) if role_tier else None, priority=priority)


def test_the_seed_model_serving_keeps_each_prefill_replica_in_one_tier_1_hypernode() -> None:
    snap = cluster([[8, 8, 8, 8], [8, 8, 8, 8]])
    sample = gang("sample-0", [("prefill", 2, 2, 8), ("decode", 1, 2, 8)])
    plan = solve(snap, [sample])
    result = plan.results["sample-0"]
    assert result.placed
    assert all(tier == 1 for _, tier in result.role_domains.values())
    assert result.group_tier is not None and result.group_tier <= 2


def test_a_gang_that_fits_in_one_leaf_is_not_spread_over_two() -> None:
    snap = cluster([[8, 8], [8, 8]], free={"n00": 4})
    plan = solve(snap, [gang("g", [("prefill", 1, 1, 4), ("decode", 1, 1, 8)], role_tier=2)])
    assert plan.results["g"].group_tier == 1


def test_a_role_replica_larger_than_any_leaf_is_unplaceable_with_a_role_policy_reason() -> None:
    snap = cluster([[8, 8], [8, 8]])
    plan = solve(snap, [gang("g", [("prefill", 1, 3, 8)])])
    reason = plan.results["g"].reason
    assert reason is not None and reason.constraint == "rolePolicy" and reason.tier == 1


def test_a_gang_larger_than_its_group_domain_is_unplaceable_with_a_group_policy_reason() -> None:
    snap = cluster([[8, 8], [8, 8], [8, 8], [8, 8]], tiers=3)
    plan = solve(snap, [gang("g", [("prefill", 3, 2, 8)], group_tier=2)])
    reason = plan.results["g"].reason
    assert reason is not None and reason.constraint == "groupPolicy" and reason.tier == 2


def test_a_pod_bigger_than_every_node_is_unplaceable_for_capacity() -> None:
    plan = solve(cluster([[8, 8]]), [gang("g", [("prefill", 1, 1, 16)])])
    reason = plan.results["g"].reason
    assert reason is not None and reason.constraint == "capacity"


def test_a_pod_whose_selector_matches_no_node_is_unplaceable_for_node_selection() -> None:
    picky = Scheduling(node_selector=(("gpu", "h200"),))
    plan = solve(cluster([[8, 8]]), [gang("g", [("prefill", 1, 1, 8)], scheduling=picky)])
    reason = plan.results["g"].reason
    assert reason is not None and reason.constraint == "nodeSelection"


def test_node_selectors_steer_pods_to_matching_nodes() -> None:
    snap = cluster([[8, 8], [8, 8]], labels={"n11": {"gpu": "h200"}})
    picky = Scheduling(node_selector=(("gpu", "h200"),))
    plan = solve(snap, [gang("g", [("prefill", 1, 1, 8)], scheduling=picky)])
    assert plan.assignments == {"g-prefill-0-0": "n11"}


def test_tainted_nodes_take_only_pods_that_tolerate_them() -> None:
    snap = cluster([[8], [8]], taints={"n00": Taint("dedicated", "infer", "NoSchedule")})
    plain = gang("plain", [("a", 1, 1, 8)], group_tier=None, role_tier=None)
    tolerant = gang("tolerant", [("a", 1, 1, 8)], group_tier=None, role_tier=None,
                    scheduling=Scheduling(tolerations=(Toleration("dedicated", "Equal", "infer", "NoSchedule"),)))
    plan = solve(snap, [plain, tolerant])
    assert plan.assignments == {"plain-a-0-0": "n10", "tolerant-a-0-0": "n00"}


def test_higher_priority_wins_over_any_number_of_lower_priority_gangs() -> None:
    snap = cluster([[8, 8]])
    high = gang("high", [("a", 1, 2, 8)], priority=10)
    lows = [gang(f"low{i}", [("a", 1, 1, 8)]) for i in range(2)]
    plan = solve(snap, [*lows, high])
    assert plan.placed == ["high"]


def test_more_small_gangs_beat_one_large_gang_at_equal_priority() -> None:
    snap = cluster([[8, 8]])
    plan = solve(snap, [gang("big", [("a", 1, 2, 8)]), gang("s1", [("a", 1, 1, 8)]), gang("s2", [("a", 1, 1, 8)])])
    assert sorted(plan.placed) == ["s1", "s2"]


def test_a_small_pod_fills_a_partly_used_node_and_keeps_whole_nodes_whole() -> None:
    snap = cluster([[8, 8]], free={"n00": 4})
    plan = solve(snap, [gang("small", [("a", 1, 1, 4)]), gang("whole", [("a", 1, 1, 8)])])
    assert plan.assignments == {"small-a-0-0": "n00", "whole-a-0-0": "n01"}


def test_a_small_gang_goes_to_a_partly_used_leaf_and_keeps_the_free_leaf_whole() -> None:
    snap = cluster([[8, 8], [8, 8]], free={"n00": 8})
    plan = solve(snap, [gang("g", [("a", 1, 1, 8)])])
    assert plan.assignments == {"g-a-0-0": "n01"}


def test_between_equally_good_leaves_pods_stay_on_the_leaf_they_run_on() -> None:
    snap = cluster([[8, 8], [8, 8]], free={"n00": 4, "n10": 4})
    staying = Gang("g", (RoleReplica("a", 0, (PodRequest("p", {GPU: 8}, current_node="n11"),)),))
    plan = solve(snap, [staying])
    assert plan.assignments == {"p": "n11"}


def test_optional_role_replicas_above_the_gang_minimum_are_placed_only_when_they_fit() -> None:
    snap = cluster([[8, 8]])
    replicas = tuple(RoleReplica("d", i, (PodRequest(f"d{i}", {GPU: 8}),), required=i == 0) for i in range(3))
    plan = solve(snap, [Gang("g", replicas, role_policy=TopologyPolicy("hard", 1))])
    result = plan.results["g"]
    assert result.placed and len(result.assignments) == 2
    assert len(result.unplaced_role_replicas) == 1


def test_soft_policies_do_not_block_placement() -> None:
    snap = cluster([[8], [8]])
    soft = Gang("g", (RoleReplica("a", 0, (PodRequest("p0", {GPU: 8}), PodRequest("p1", {GPU: 8}))),),
                role_policy=TopologyPolicy("soft", 1))
    assert solve(snap, [soft]).placed == ["g"]


def test_without_cpsat_the_greedy_plan_is_returned_and_labelled() -> None:
    plan = solve(cluster([[8, 8], [8, 8]]), [gang("g", [("a", 1, 1, 8)])], SolveOptions(use_cpsat=False))
    assert plan.status == "GREEDY" and plan.placed == ["g"]


def test_every_plan_reports_its_status_and_gap() -> None:
    snap = cluster([[8, 8], [8, 4]], free={"n00": 2})
    plan = solve(snap, [gang(f"g{i}", [("a", 1, 1, 4), ("b", 1, 1, 2)]) for i in range(4)])
    assert plan.status in {"OPTIMAL", "FEASIBLE", "GREEDY"}
    assert 0.0 <= plan.gap <= 1.0


def test_duplicate_gang_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        solve(cluster([[8]]), [gang("g", [("a", 1, 1, 8)]), gang("g", [("a", 1, 1, 8)])])


# ----------------------------------------------------------------------------- brute force
def brute_force(snap: Snapshot, gangs: list[Gang]) -> tuple[int, int]:
    """(most gangs placed, least spread among plans placing that many), by enumeration."""
    nodes = sorted(snap.nodes)
    best = (0, 0)
    for size in range(len(gangs), 0, -1):
        spreads = []
        for subset in itertools.combinations(gangs, size):
            spread = _min_spread(snap, list(subset), nodes)
            if spread is not None:
                spreads.append(spread)
        if spreads:
            return size, min(spreads)
    return best


def _min_spread(snap: Snapshot, gangs: list[Gang], nodes: list[str]) -> int | None:
    pods = [(g, rr, p) for g in gangs for rr in g.role_replicas for p in rr.pods]
    best: list[int | None] = [None]
    free = {n: dict(snap.free[n]) for n in nodes}
    chosen: dict[str, str] = {}

    def spread_of() -> int | None:
        total = 0
        for g in gangs:
            g_nodes = [chosen[p.name] for p in g.pods]
            tier = snap.lca_tier(g_nodes)
            if g.group_policy and g.group_policy.hard_tier and tier > g.group_policy.hard_tier:
                return None
            total += tier - 1
            for rr in g.role_replicas:
                rt = snap.lca_tier([chosen[p.name] for p in rr.pods])
                policy = g.policy_for(rr.role)
                if policy and policy.hard_tier and rt > policy.hard_tier:
                    return None
                total += rt - 1
        return total

    def rec(i: int) -> None:
        if i == len(pods):
            s = spread_of()
            if s is not None and (best[0] is None or s < best[0]):
                best[0] = s
            return
        _, _, pod = pods[i]
        for n in nodes:
            if fits(pod.requests, free[n]):
                free[n][GPU] -= pod.requests[GPU]
                chosen[pod.name] = n
                rec(i + 1)
                free[n][GPU] += pod.requests[GPU]
        chosen.pop(pod.name, None)

    rec(0)
    return best[0]


@pytest.mark.parametrize("seed", range(12))
def test_the_solver_matches_brute_force_on_gangs_placed_and_spread(seed: int) -> None:
    rng = random.Random(seed)
    leaves = [[8] * rng.randint(1, 2) for _ in range(rng.randint(2, 3))]
    snap = cluster(leaves, free={f"n{li}0": rng.choice((0, 2, 4)) for li in range(len(leaves))})
    gangs = [
        gang(f"g{i}", [(r, 1, rng.randint(1, 2), rng.choice((2, 4, 8))) for r in ("p", "d")[: rng.randint(1, 2)]],
             group_tier=rng.choice((1, 2)), role_tier=1)
        for i in range(rng.randint(1, 3))
    ]
    plan = solve(snap, gangs, SolveOptions(time_limit_s=10.0))
    assert violations(snap, gangs, plan) == []
    assert (len(plan.placed), plan.stats["spread"]) == brute_force(snap, gangs)


def test_a_gang_whose_members_already_run_stays_within_their_group_domain() -> None:
    snap = cluster([[8, 8], [8, 8], [8, 8], [8, 8]], free={"n20": 8}, tiers=3)
    rest = Gang("g", (RoleReplica("d", 0, (PodRequest("d0", {GPU: 8}),)),),
                TopologyPolicy("hard", 2), TopologyPolicy("hard", 1), anchored_nodes=("n20",))
    plan = solve(snap, [rest])
    assert snap.leaf_of[plan.assignments["d0"]] in {"leaf2", "leaf3"}
    assert violations(snap, [rest], plan) == []


def test_a_structural_reason_wins_over_a_busy_cluster() -> None:
    # Every node is partly used, but the role replica could not fit in a leaf even if all were free.
    snap = cluster([[8, 8], [8, 8]], free={"n00": 2, "n01": 2, "n10": 2, "n11": 2})
    plan = solve(snap, [gang("g", [("prefill", 1, 3, 8)])])
    reason = plan.results["g"].reason
    assert reason is not None and reason.constraint == "rolePolicy" and "empty cluster" in reason.message


def test_a_gang_that_fits_an_empty_cluster_but_not_now_names_free_capacity() -> None:
    snap = cluster([[8, 8], [8, 8]], free={"n00": 2, "n01": 2, "n10": 2, "n11": 2})
    reason = solve(snap, [gang("g", [("prefill", 1, 1, 8)])]).results["g"].reason
    assert reason is not None and reason.constraint == "capacity" and "free now" in reason.message
