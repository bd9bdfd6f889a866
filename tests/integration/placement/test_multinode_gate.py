"""A role replica that needs two nodes goes through the gate path and runs.

Volcano v1.14.1 checks the pods of one `volcano.sh/task-spec` (a Kthena role replica) against the
first pod's allowed nodes, so the gate path gives every pod of the replica the same hostname set
(the nodes planned for the replica). Here an entry and a worker of 8 GPUs each (a whole `small`
node each) must both run, inside one tier-1 leaf.

The cluster is private to this module: on the shared `local_cluster` other areas' pods take
GPUs at the same time, and a full node per pod needs two empty nodes in one leaf.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from caldera.localcluster import session
from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster

PLANNED = "caldera.dev/planned-node"


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Overrides the shared session cluster for this module, so `placement_env` runs on a private one."""
    with session.private(tmp_path_factory.mktemp("multinode-cluster"), label="multinode_cluster") as cluster:
        yield cluster


def hostnames(pod: dict[str, Any]) -> list[str]:
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    return [v for t in terms for e in t.get("matchExpressions") or [] if e["key"] == "kubernetes.io/hostname"
            for v in e["values"]]


def all_running(pods: dict[str, dict[str, Any]], count: int) -> bool:
    return len(pods) == count and all(
        p["status"].get("phase") == "Running" and p["spec"].get("nodeName") for p in pods.values())


def test_a_role_replica_spanning_two_nodes_runs_within_its_planned_leaf(placement_env: Any) -> None:
    env = placement_env
    env.apply(env.modelserving("pair", [("prefill", 1, 1, 8)]))
    pods = env.wait_until("both pods of the role replica Running", lambda: (
        (p := env.pods("pair")) and all_running(p, 2) and p), timeout=120)
    planned = sorted(p["metadata"]["annotations"][PLANNED] for p in pods.values())
    bound = sorted(p["spec"]["nodeName"] for p in pods.values())
    assert len(set(planned)) == 2
    assert bound == planned
    assert all(hostnames(p) == planned for p in pods.values())
    assert len({env.hypernode_of(node) for node in bound}) == 1
