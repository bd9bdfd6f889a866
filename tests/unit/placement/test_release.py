"""Handing a planned pod to Volcano: the JSON patch, and when a gated group is complete."""

import copy
import datetime as dt
from typing import Any

import jsonpatch
import pytest

from placement.release import (
    PLACEMENT_GATE,
    PLANNED_AT_ANNOTATION,
    REASON_ANNOTATION,
    complete_groups,
    expected_pods,
    overdue_groups,
    release_patch,
    task_spec_hostnames,
)
from topology.kube import PLANNED_NODE_ANNOTATION


def gated_pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7",
                     "annotations": {"scheduling.k8s.io/group-name": "g"}},
        "spec": {"containers": [{"name": "c"}], "schedulingGates": [{"name": PLACEMENT_GATE}], **spec},
    }


def apply(pod: dict[str, Any], node: str = "node-3") -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(pod), release_patch(pod, node, "2026-01-01T00:00:00Z"))
    return result


def required_terms(pod: dict[str, Any]) -> list[dict[str, Any]]:
    terms: list[dict[str, Any]] = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return terms


def test_a_released_pod_requires_its_planned_hostname() -> None:
    pod = apply(gated_pod())
    assert required_terms(pod) == [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-3"]}]}]


def replica_pod(name: str, task_spec: str) -> dict[str, Any]:
    pod = gated_pod()
    pod["metadata"] = {**pod["metadata"], "name": name,
                       "annotations": {"scheduling.k8s.io/group-name": "g", "volcano.sh/task-spec": task_spec}}
    return pod


def test_pods_of_one_role_replica_planned_on_two_nodes_get_identical_affinity_listing_both() -> None:
    pods = [replica_pod("ms-prefill-0-entry", "prefill-0"), replica_pod("ms-prefill-0-worker-1", "prefill-0")]
    assignments = {"ms-prefill-0-entry": "node-5", "ms-prefill-0-worker-1": "node-4"}
    hostnames = task_spec_hostnames(pods, assignments)
    released = [jsonpatch.apply_patch(copy.deepcopy(p), release_patch(
        p, assignments[p["metadata"]["name"]], "t", hostnames[p["metadata"]["name"]])) for p in pods]
    expected = [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-4", "node-5"]}]}]
    assert [required_terms(p) for p in released] == [expected, expected]


def test_each_pod_of_a_role_replica_keeps_its_own_planned_node_annotation() -> None:
    pods = [replica_pod("a", "prefill-0"), replica_pod("b", "prefill-0")]
    assignments = {"a": "node-5", "b": "node-4"}
    hostnames = task_spec_hostnames(pods, assignments)
    released = [jsonpatch.apply_patch(copy.deepcopy(p), release_patch(
        p, assignments[p["metadata"]["name"]], "t", hostnames[p["metadata"]["name"]])) for p in pods]
    assert [p["metadata"]["annotations"][PLANNED_NODE_ANNOTATION] for p in released] == ["node-5", "node-4"]


def test_role_replicas_with_different_task_specs_get_their_own_node_sets() -> None:
    pods = [replica_pod("a", "prefill-0"), replica_pod("b", "prefill-0"), replica_pod("c", "prefill-1")]
    hostnames = task_spec_hostnames(pods, {"a": "node-0", "b": "node-1", "c": "node-4"})
    assert hostnames == {"a": ["node-0", "node-1"], "b": ["node-0", "node-1"], "c": ["node-4"]}


def test_pods_without_a_task_spec_keep_their_own_node() -> None:
    pods = [gated_pod(), {**gated_pod(), "metadata": {**gated_pod()["metadata"], "name": "q"}}]
    assert task_spec_hostnames(pods, {"p": "node-0", "q": "node-1"}) == {"p": ["node-0"], "q": ["node-1"]}


def test_a_released_pod_loses_only_the_caldera_gate() -> None:
    pod = apply(gated_pod(schedulingGates=[{"name": "other.io/gate"}, {"name": PLACEMENT_GATE}]))
    assert pod["spec"]["schedulingGates"] == [{"name": "other.io/gate"}]


def test_a_pod_with_only_the_caldera_gate_ends_up_with_none() -> None:
    assert "schedulingGates" not in apply(gated_pod())["spec"]


def test_the_planned_node_and_time_are_recorded_in_annotations() -> None:
    annotations = apply(gated_pod())["metadata"]["annotations"]
    assert annotations[PLANNED_NODE_ANNOTATION] == "node-3"
    assert annotations[PLANNED_AT_ANNOTATION] == "2026-01-01T00:00:00Z"


def test_existing_affinity_terms_each_gain_the_hostname_requirement() -> None:
    zone = {"key": "zone", "operator": "In", "values": ["a"]}
    rack = {"key": "rack", "operator": "Exists"}
    pod = apply(gated_pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [zone]}, {"matchExpressions": [rack]}]}}}))
    assert [t["matchExpressions"][0] for t in required_terms(pod)] == [zone, rack]
    assert all(t["matchExpressions"][1]["values"] == ["node-3"] for t in required_terms(pod))


def test_pod_affinity_is_kept_when_node_affinity_is_added() -> None:
    pod_affinity: dict[str, Any] = {"requiredDuringSchedulingIgnoredDuringExecution": []}
    pod = apply(gated_pod(affinity={"podAffinity": pod_affinity}))
    assert pod["spec"]["affinity"]["podAffinity"] == pod_affinity
    assert required_terms(pod)[0]["matchExpressions"][0]["values"] == ["node-3"]


def test_a_previous_unplaceable_reason_is_cleared_on_release() -> None:
    pod = gated_pod()
    pod["metadata"]["annotations"][REASON_ANNOTATION] = "rolePolicy (tier 1): too big"
    assert REASON_ANNOTATION not in apply(pod)["metadata"]["annotations"]


def test_the_patch_applies_only_to_the_version_that_was_planned() -> None:
    stale = gated_pod()
    newer = copy.deepcopy(stale)
    newer["metadata"]["resourceVersion"] = "8"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(newer, release_patch(stale, "node-1", "t"))


def test_expected_pods_counts_every_pod_of_every_role_replica() -> None:
    ms = {"spec": {"template": {"roles": [{"name": "prefill", "replicas": 2, "workerReplicas": 1},
                                          {"name": "decode", "workerReplicas": 1}]}}}
    assert expected_pods(ms, {"spec": {"minMember": 4}}) == 6


def test_expected_pods_is_at_least_the_podgroup_min_member() -> None:
    assert expected_pods(None, {"spec": {"minMember": 4}}) == 4


def test_a_group_is_complete_only_when_its_live_pods_reach_the_expected_count() -> None:
    pods = [gated_pod() for _ in range(3)]
    groups = {("ns", "g"): pods, ("ns", "h"): pods[:2]}
    assert complete_groups(groups, {("ns", "g"): 3, ("ns", "h"): 3}) == [("ns", "g")]


def test_a_group_with_no_gated_pod_is_not_planned() -> None:
    pod = gated_pod()
    del pod["spec"]["schedulingGates"]
    assert complete_groups({("ns", "g"): [pod]}, {("ns", "g"): 1}) == []


def planned(name: str, node: str, at: str, bound: bool = False, group: str = "g") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns",
                         "annotations": {"scheduling.k8s.io/group-name": group, PLANNED_NODE_ANNOTATION: node,
                                         PLANNED_AT_ANNOTATION: at}},
            "spec": {"nodeName": node if bound else None}}


NOW = dt.datetime(2026, 1, 1, 0, 2, tzinfo=dt.UTC)


def test_a_gang_left_unbound_past_the_deadline_goes_back_whole() -> None:
    pods = [planned("a", "n1", "2026-01-01T00:00:00Z"), planned("b", "n2", "2026-01-01T00:01:59Z")]
    overdue = overdue_groups(pods, NOW, 60, {"n1", "n2"})
    assert [p["metadata"]["name"] for p in overdue[("ns", "g")]] == ["a", "b"]


def test_bound_pods_are_never_sent_back() -> None:
    pods = [planned("a", "n1", "2026-01-01T00:00:00Z"), planned("b", "n2", "2026-01-01T00:00:00Z", bound=True)]
    assert [p["metadata"]["name"] for p in overdue_groups(pods, NOW, 60, {"n1", "n2"})[("ns", "g")]] == ["a"]


def test_a_pod_planned_on_a_vanished_node_goes_back_before_the_deadline() -> None:
    pods = [planned("a", "gone", "2026-01-01T00:01:59Z")]
    assert ("ns", "g") in overdue_groups(pods, NOW, 60, {"n1"})


def test_pods_within_the_deadline_on_live_nodes_stay() -> None:
    pods = [planned("a", "n1", "2026-01-01T00:01:30Z")]
    assert overdue_groups(pods, NOW, 60, {"n1"}) == {}
