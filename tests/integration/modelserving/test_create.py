"""The seed example on the `small` topology: Kthena's exact objects, Volcano placement within tiers, status."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster

ENTRY = "modelserving.volcano.sh/entry"


def _started(ms_env: Any, seed: dict[str, Any]) -> None:
    ms_env.apply(seed)
    ms_env.wait_until("the seed pods Running", lambda: ms_env.running(ms_env.seed_pod_names()), timeout=120)


def test_seed_example_creates_exactly_kthenas_pods(ms_env: Any, seed: dict[str, Any]) -> None:
    ms_env.apply(seed)
    ms_env.wait_until("six pods", lambda: len(ms_env.pods()) == 6, timeout=60)
    assert set(ms_env.pods()) == {
        "sample-0-prefill-0-0", "sample-0-prefill-0-1", "sample-0-prefill-1-0", "sample-0-prefill-1-1",
        "sample-0-decode-0-0", "sample-0-decode-0-1"}


def test_seed_pods_carry_kthena_labels_env_and_volcano_annotations(ms_env: Any, seed: dict[str, Any]) -> None:
    ms_env.apply(seed)
    pod = ms_env.wait_until("the prefill-1 worker", lambda: ms_env.pods().get("sample-0-prefill-1-1"))
    labels = pod["metadata"]["labels"]
    assert {k: labels[k] for k in ("modelserving.volcano.sh/name", "modelserving.volcano.sh/group-name",
                                   "modelserving.volcano.sh/role", "modelserving.volcano.sh/role-id")} == {
        "modelserving.volcano.sh/name": "sample", "modelserving.volcano.sh/group-name": "sample-0",
        "modelserving.volcano.sh/role": "prefill", "modelserving.volcano.sh/role-id": "prefill-1"}
    assert labels["modelserving.volcano.sh/revision"] and labels["modelserving.volcano.sh/role-template-hash"]
    assert ENTRY not in labels
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env == {"GROUP_SIZE": "2", "ENTRY_ADDRESS": f"sample-0-prefill-1-0.{ms_env.namespace}", "WORKER_INDEX": "1"}
    assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "sample-0"
    assert pod["metadata"]["annotations"]["volcano.sh/task-spec"] == "prefill-1"
    assert pod["spec"]["schedulerName"] == "volcano"
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelServing", "sample", True)


def test_seed_example_creates_one_headless_service_per_role_replica(ms_env: Any, seed: dict[str, Any]) -> None:
    ms_env.apply(seed)
    services = ms_env.wait_until("three services", lambda: (s := ms_env.services()) and len(s) == 3 and s)
    assert set(services) == {"sample-0-prefill-0-0", "sample-0-prefill-1-0", "sample-0-decode-0-0"}
    spec = services["sample-0-decode-0-0"]["spec"]
    assert spec["clusterIP"] == "None" and spec["publishNotReadyAddresses"] is True
    assert spec["selector"] == {"modelserving.volcano.sh/group-name": "sample-0", "modelserving.volcano.sh/role": "decode",
                                "modelserving.volcano.sh/role-id": "decode-0", ENTRY: "true"}


def test_seed_example_creates_one_podgroup_matching_kthenas(ms_env: Any, seed: dict[str, Any]) -> None:
    seed["metadata"]["annotations"] = {"scheduling.volcano.sh/queue-name": "default"}
    ms_env.apply(seed)
    groups = ms_env.wait_until("a PodGroup", lambda: ms_env.podgroups())
    assert list(groups) == ["sample-0"]
    spec = groups["sample-0"]["spec"]
    assert spec["minMember"] == 6
    assert spec["queue"] == "default"
    assert spec["networkTopology"] == {"mode": "hard", "highestTierAllowed": 2}
    assert spec["minResources"]["nvidia.com/gpu"] == "6"
    assert [(p["name"], p["subGroupSize"], p["minSubGroups"], p["matchLabelKeys"], p["networkTopology"])
            for p in spec["subGroupPolicy"]] == [
        ("prefill", 2, 2, ["modelserving.volcano.sh/role-id"], {"mode": "hard", "highestTierAllowed": 1}),
        ("decode", 2, 1, ["modelserving.volcano.sh/role-id"], {"mode": "hard", "highestTierAllowed": 1})]
    assert spec["subGroupPolicy"][0]["labelSelector"] == {"matchLabels": {
        "modelserving.volcano.sh/name": "sample", "modelserving.volcano.sh/role": "prefill"}}


def test_volcano_places_each_role_within_one_leaf(ms_env: Any, seed: dict[str, Any]) -> None:
    _started(ms_env, seed)
    nodes = {n.metadata.name: n.metadata.labels for n in client.CoreV1Api(ms_env.api).list_node().items}
    pods = ms_env.pods()
    for role in ("prefill", "decode"):
        leaves = {nodes[p["spec"]["nodeName"]]["caldera.dev/leaf"] for n, p in pods.items() if f"-{role}-" in n}
        assert len(leaves) == 1, f"{role} spread over leaves {leaves}"
    spines = {nodes[p["spec"]["nodeName"]]["caldera.dev/spine"] for p in pods.values()}
    assert len(spines) == 1


def test_status_becomes_available(ms_env: Any, seed: dict[str, Any]) -> None:
    _started(ms_env, seed)
    ms_env.wait_until("Available", ms_env.available, timeout=60)
    status = ms_env.ms()["status"]
    assert (status["replicas"], status["availableReplicas"], status["updatedReplicas"]) == (1, 1, 1)
    assert status["labelSelector"] == ("modelserving.volcano.sh/entry=true,modelserving.volcano.sh/name=sample,"
                                       "modelserving.volcano.sh/role=prefill,modelserving.volcano.sh/role-id=prefill-0")


def test_no_writes_at_steady_state(ms_env: Any, controller_proc: Any, seed: dict[str, Any]) -> None:
    _started(ms_env, seed)
    ms_env.wait_until("Available", ms_env.available, timeout=60)
    before = controller_proc.metric("caldera_modelserving_writes_total")
    # Touch every child (a status heartbeat on the ModelServing's pods) so the controller reconciles again.
    for name in ms_env.pods():
        ms_env.core.patch_namespaced_pod(name, ms_env.namespace, {"metadata": {"annotations": {"touch": "1"}}})
    ms_env.wait_until("reconciles after the touch", lambda: controller_proc.metric(
        'caldera_modelserving_reconciles_total{result="ok"}') > 0, timeout=30)
    ms_env.wait_until("the queue drained", lambda: controller_proc.metric("caldera_modelserving_queue_depth") == 0)
    assert controller_proc.metric("caldera_modelserving_writes_total") == before
