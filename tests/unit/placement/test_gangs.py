"""Gangs read from a Volcano PodGroup and its pods, the way Volcano forms sub-groups."""

from typing import Any

import pytest

from placement.gangs import gang_from_objects
from topology.resources import GPU


def pod(name: str, role: str, role_id: str, gpus: int = 4, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"modelserving.volcano.sh/name": "sample", "modelserving.volcano.sh/role": role,
                                "modelserving.volcano.sh/role-id": role_id},
                     "annotations": {"scheduling.k8s.io/group-name": "sample-0", "volcano.sh/task-spec": role_id}},
        "spec": {"containers": [{"resources": {"requests": {GPU: str(gpus)}}}], **spec},
    }


def seed_pods() -> list[dict[str, Any]]:
    return [pod(f"sample-0-{rid}-{k}", rid.split("-")[0], rid)
            for rid in ("prefill-0", "prefill-1", "decode-0") for k in range(2)]


def podgroup(min_subgroups: int = 2) -> dict[str, Any]:
    def policy(role: str, minimum: int) -> dict[str, Any]:
        return {"name": role, "labelSelector": {"matchLabels": {"modelserving.volcano.sh/name": "sample",
                                                                "modelserving.volcano.sh/role": role}},
                "matchLabelKeys": ["modelserving.volcano.sh/role-id"], "subGroupSize": 2, "minSubGroups": minimum,
                "networkTopology": {"mode": "hard", "highestTierAllowed": 1}}
    return {"metadata": {"name": "sample-0", "namespace": "default"},
            "spec": {"minMember": 6, "networkTopology": {"mode": "hard", "highestTierAllowed": 2},
                     "subGroupPolicy": [policy("prefill", min_subgroups), policy("decode", 1)]}}


def test_each_role_id_is_one_role_replica() -> None:
    gang = gang_from_objects(podgroup(), seed_pods())
    assert sorted(rr.name for rr in gang.role_replicas) == ["decode-0", "prefill-0", "prefill-1"]
    assert all(len(rr.pods) == 2 for rr in gang.role_replicas)


def test_group_and_role_policies_come_from_the_podgroup() -> None:
    gang = gang_from_objects(podgroup(), seed_pods())
    assert gang.group_policy is not None and gang.group_policy.hard_tier == 2
    policy = gang.policy_for("prefill")
    assert policy is not None and policy.hard_tier == 1


def test_sub_groups_beyond_min_sub_groups_are_optional() -> None:
    gang = gang_from_objects(podgroup(min_subgroups=1), seed_pods())
    required = {rr.name: rr.required for rr in gang.role_replicas}
    assert required == {"decode-0": True, "prefill-0": True, "prefill-1": False}


def test_without_a_podgroup_pods_group_by_task_spec() -> None:
    gang = gang_from_objects(None, seed_pods())
    assert sorted(rr.role for rr in gang.role_replicas) == ["decode-0", "prefill-0", "prefill-1"]
    assert gang.group_policy is None


def test_pod_requests_node_selectors_and_tolerations_are_read() -> None:
    p = pod("x", "prefill", "prefill-0", gpus=8, nodeSelector={"zone": "a"},
            tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}])
    request = gang_from_objects(None, [p]).pods[0]
    assert request.requests == {GPU: 8}
    assert request.scheduling.node_selector == (("zone", "a"),)
    assert request.scheduling.tolerations[0].operator == "Exists"


def test_a_bound_pod_reports_its_current_node() -> None:
    p = pod("x", "prefill", "prefill-0", nodeName="node-2")
    assert gang_from_objects(None, [p]).pods[0].current_node == "node-2"


def test_highest_tier_name_resolves_through_hypernode_tier_names() -> None:
    pg = podgroup()
    pg["spec"]["networkTopology"] = {"mode": "hard", "highestTierName": "spine"}
    gang = gang_from_objects(pg, seed_pods(), tier_names={"leaf": 1, "spine": 2})
    assert gang.group_policy is not None and gang.group_policy.hard_tier == 2


def test_an_unknown_tier_name_is_an_error_naming_the_field() -> None:
    pg = podgroup()
    pg["spec"]["networkTopology"] = {"mode": "hard", "highestTierName": "rack"}
    with pytest.raises(ValueError, match=r"highestTierName.*'rack'"):
        gang_from_objects(pg, seed_pods(), tier_names={"leaf": 1})
