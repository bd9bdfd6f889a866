"""Property: no plan, from the solver, the greedy or the Volcano baseline, breaks a hard constraint."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placement.constraints import violations
from placement.greedy import greedy_assign
from placement.model import Gang, PodRequest, RoleReplica, Scheduling, TopologyPolicy
from placement.plan import GangResult, Plan
from placement.snapshot import Snapshot
from placement.solver import SolveOptions, solve
from placement.volcano_baseline import volcano_allocate
from topology.graph import HyperNodeSpec, MemberSelector, NodeInfo, Topology
from topology.resources import CPU, GPU


@st.composite
def clusters(draw: st.DrawFn) -> Snapshot:
    n_leaves = draw(st.integers(1, 4))
    nodes, hns = [], []
    for li in range(n_leaves):
        names = [f"n{li}-{i}" for i in range(draw(st.integers(1, 3)))]
        for name in names:
            nodes.append(NodeInfo(name, {GPU: 8, CPU: 32000}, {"zone": draw(st.sampled_from(["a", "b"]))}))
        hns.append(HyperNodeSpec(f"leaf{li}", 1, tuple(MemberSelector("Node", exact=n) for n in names)))
    spines = [hns[i:i + 2] for i in range(0, n_leaves, 2)]
    for si, kids in enumerate(spines):
        hns.append(HyperNodeSpec(f"spine{si}", 2, tuple(MemberSelector("HyperNode", exact=k.name) for k in kids)))
    topo = Topology.build(nodes, hns)
    for node in nodes:
        used = draw(st.sampled_from([0, 0, 1, 2, 4, 8]))
        if used:
            topo.add_pod(f"x/{node.name}", node.name, {GPU: used, CPU: used * 2000})
    return Snapshot.from_topology(topo)


@st.composite
def gang_lists(draw: st.DrawFn) -> list[Gang]:
    gangs = []
    for gi in range(draw(st.integers(1, 4))):
        replicas = []
        for ri in range(draw(st.integers(1, 3))):
            gpus = draw(st.sampled_from([1, 2, 4, 8]))
            zone = draw(st.sampled_from([None, None, "a"]))
            sched = Scheduling(node_selector=(("zone", zone),)) if zone else Scheduling()
            pods = tuple(PodRequest(f"g{gi}-r{ri}-{k}", {GPU: gpus, CPU: gpus * 2000}, sched)
                         for k in range(draw(st.integers(1, 3))))
            replicas.append(RoleReplica(f"r{ri % 2}", ri, pods, required=draw(st.booleans()) or ri == 0))
        tier = st.one_of(st.none(), st.integers(1, 3))
        group, role = draw(tier), draw(tier)
        gangs.append(Gang(f"g{gi}", tuple(replicas),
                          TopologyPolicy("hard", group) if group else None,
                          TopologyPolicy(draw(st.sampled_from(["hard", "soft"])), role) if role else None,
                          priority=draw(st.integers(0, 2))))
    return gangs


def as_plan(assignments: dict[str, dict[str, str]], gangs: list[Gang]) -> Plan:
    return Plan({g.name: GangResult(g.name, g.name in assignments, assignments.get(g.name, {})) for g in gangs},
                status="GREEDY")


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(clusters(), gang_lists())
def test_solver_plans_break_no_hard_constraint(snap: Snapshot, gangs: list[Gang]) -> None:
    plan = solve(snap, gangs, SolveOptions(time_limit_s=2.0, num_workers=1))
    assert violations(snap, gangs, plan) == []


@SETTINGS
@given(clusters(), gang_lists())
def test_the_solver_places_at_least_what_the_greedy_places(snap: Snapshot, gangs: list[Gang]) -> None:
    plan = solve(snap, gangs, SolveOptions(time_limit_s=2.0, num_workers=1))
    assert len(plan.placed) >= len(greedy_assign(snap, gangs))


@SETTINGS
@given(clusters(), gang_lists())
def test_greedy_plans_break_no_hard_constraint(snap: Snapshot, gangs: list[Gang]) -> None:
    assert violations(snap, gangs, as_plan(greedy_assign(snap, gangs), gangs)) == []


@SETTINGS
@given(clusters(), gang_lists())
def test_volcano_baseline_plans_break_no_hard_constraint(snap: Snapshot, gangs: list[Gang]) -> None:
    assert violations(snap, gangs, as_plan(volcano_allocate(snap, gangs), gangs)) == []
