"""`placement.volcano_baseline` predicts what the real vc-scheduler does with a gang.

The benchmarks compare Caldera's plan with that re-implementation, so it has to stand for real
Volcano: here a ServingGroup-shaped PodGroup (hard groupPolicy tier 2, one subGroupPolicy per role
with hard rolePolicy tier 1) goes to the real vc-scheduler of a `small` cluster (leaf-0 =
node-0..3, leaf-1 = node-4..7 under spine-0; 8 GPUs a node) whose GPUs are partly taken by
bound filler pods, and the outcome is checked against the re-implementation's prediction from
a snapshot read off the cluster: bound or Pending, and which tier-1 leaf each role replica uses.

The cluster is private to this module: the shared `local_cluster` runs other areas' pods at
the same time, which would change the free GPUs between the prediction and the binding.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from caldera.localcluster import session
from caldera.localcluster.session import LocalCluster
from placement.model import Gang, PodRequest, RoleReplica, TopologyPolicy
from placement.volcano_baseline import VolcanoConfig, volcano_allocate

pytestmark = pytest.mark.cluster

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
PENDING_SECONDS = 15.0


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"caldera_benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BENCH = _load("placement")
REAL = _load("placement_cluster")


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with session.private(tmp_path_factory.mktemp("fidelity-cluster"), label="fidelity_cluster") as cluster:
        yield cluster


@pytest.fixture
def kube(small_cluster: LocalCluster) -> Iterator[Any]:
    k = REAL.Kube(small_cluster)
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def namespace(kube: Any) -> Iterator[str]:
    name = f"fid-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    try:
        yield name
    finally:
        kube.clear_namespace(name)


def gang(name: str, replicas: list[tuple[str, int]], gpus: int = 8, group_tier: int = 2) -> Gang:
    """replicas: (role, pods) per role replica, in order; every pod takes `gpus` GPUs."""
    counts: dict[str, int] = {}
    rrs = []
    for role, pods in replicas:
        index = counts.get(role, 0)
        counts[role] = index + 1
        rrs.append(RoleReplica(role, index, tuple(
            PodRequest(f"{name}-{role}-{index}-{k}", BENCH.pod_requests(gpus)) for k in range(pods))))
    return Gang(name, tuple(rrs), TopologyPolicy("hard", group_tier), TopologyPolicy("hard", 1))


def run(kube: Any, namespace: str, used: dict[str, int], g: Gang) -> tuple[dict[str, str], dict[str, str] | None]:
    """Occupy `used` GPUs per node, then (the re-implementation's assignment, real Volcano's or None)."""
    REAL.fill(kube, namespace, [REAL.filler_pod(node, BENCH.pod_requests(n)) for node, n in sorted(used.items())])
    snapshot = kube.snapshot(namespace)
    predicted = volcano_allocate(snapshot, [g], VolcanoConfig.local_cluster()).get(g.name, {})
    bound, assignments = REAL.submit(kube, namespace, g, PENDING_SECONDS)
    return predicted, assignments if bound else None


def leaves(assignments: dict[str, str], g: Gang) -> list[set[str]]:
    """The tier-1 leaves each role replica of `g` uses (node-0..3 are leaf-0, node-4..7 leaf-1)."""
    return [{f"leaf-{int(assignments[p.name].rsplit('-', 1)[1]) // 4}" for p in rr.pods} for rr in g.role_replicas]


def test_a_replica_goes_to_the_fuller_leaf_as_predicted(kube: Any, namespace: str) -> None:
    g = gang("fuller", [("engine", 2)])
    predicted, real = run(kube, namespace, {"node-0": 8, "node-1": 4}, g)
    assert real is not None and predicted
    assert leaves(real, g) == leaves(predicted, g) == [{"leaf-0"}]


def test_a_replica_larger_than_any_leaf_stays_pending_as_predicted(kube: Any, namespace: str) -> None:
    g = gang("toolarge", [("engine", 5)])
    predicted, real = run(kube, namespace, {}, g)
    assert predicted == {} and real is None


def test_a_gang_fragmented_across_nodes_stays_pending_as_predicted(kube: Any, namespace: str) -> None:
    # 32 GPUs are free, 4 on every node, but no node has the 8 one pod needs.
    g = gang("fragmented", [("engine", 2)])
    predicted, real = run(kube, namespace, {f"node-{i}": 4 for i in range(8)}, g)
    assert predicted == {} and real is None


def test_two_prefill_replicas_split_over_both_leaves_as_predicted(kube: Any, namespace: str) -> None:
    # Each leaf has two whole free nodes: each 2-node prefill replica needs one leaf of its own.
    g = gang("split", [("prefill", 2), ("prefill", 2)])
    used = {"node-0": 8, "node-1": 8, "node-4": 8, "node-5": 8}
    predicted, real = run(kube, namespace, used, g)
    assert real is not None and predicted
    assert sorted(map(sorted, leaves(real, g))) == sorted(map(sorted, leaves(predicted, g))) == [["leaf-0"], ["leaf-1"]]


def test_a_group_bound_to_tier_1_that_needs_two_leaves_stays_pending_as_predicted(kube: Any, namespace: str) -> None:
    g = gang("grouptier1", [("prefill", 2), ("decode", 2)], group_tier=1)
    used = {"node-0": 8, "node-1": 8, "node-4": 8, "node-5": 8}
    predicted, real = run(kube, namespace, used, g)
    assert predicted == {} and real is None


def test_prefill_and_decode_share_the_leaf_with_room_for_both_as_predicted(kube: Any, namespace: str) -> None:
    # leaf-1 has three free whole nodes, leaf-0 one: only leaf-1 holds a 2-node replica.
    g = gang("pd", [("prefill", 2), ("decode", 1)])
    used = {"node-0": 8, "node-1": 8, "node-2": 8, "node-4": 8}
    predicted, real = run(kube, namespace, used, g)
    assert real is not None and predicted
    assert leaves(real, g)[0] == leaves(predicted, g)[0] == {"leaf-1"}


def pinned(g: Gang, nodes: list[str], task_spec: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`g`'s PodGroup and pods, pod i pinned to nodes[i] by hostname affinity as Caldera's gate path
    pins them; `task_spec` "replica" keeps Kthena's volcano.sh/task-spec (the role replica), "pod"
    gives each pod its own."""
    podgroup, pods = REAL.gang_objects(g)
    for pod, node in zip(pods, nodes, strict=True):
        if task_spec == "pod":
            pod["metadata"]["annotations"]["volcano.sh/task-spec"] = pod["metadata"]["name"]
        pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
    return podgroup, pods


def test_pods_sharing_a_task_spec_pinned_to_different_nodes_stay_pending(kube: Any, namespace: str) -> None:
    # Real Volcano (v1.14.1) reuses the first pod's feasible nodes for the other pods of its
    # task-spec: the second pod never sees its own node. The re-implementation checks each pod's
    # own constraints; the benchmark streams never pin pods, so their figures are unaffected.
    g = gang("sharedspec", [("engine", 2)])
    podgroup, pods = pinned(g, ["node-4", "node-5"], "replica")
    bound, _ = REAL.submit_objects(kube, namespace, podgroup, pods, PENDING_SECONDS)
    assert not bound


def test_pods_with_their_own_task_spec_are_bound_to_their_pinned_nodes(kube: Any, namespace: str) -> None:
    g = gang("ownspec", [("engine", 2)])
    podgroup, pods = pinned(g, ["node-4", "node-5"], "pod")
    bound, assignments = REAL.submit_objects(kube, namespace, podgroup, pods, PENDING_SECONDS)
    assert bound and assignments == {"ownspec-engine-0-0": "node-4", "ownspec-engine-0-1": "node-5"}
