from __future__ import annotations

from typing import Any

from modelserving import labels as L
from modelserving.desired import PodOptions, label_selector, podgroup, serving_group
from modelserving.revision import role_template_hash, template_revision
from modelserving.spec import ModelServing, parse_modelserving

SEED_PODS = [
    "sample-0-prefill-0-0", "sample-0-prefill-0-1", "sample-0-prefill-1-0", "sample-0-prefill-1-1",
    "sample-0-decode-0-0", "sample-0-decode-0-1",
]


def _pods(ms: ModelServing, options: PodOptions | None = None) -> dict[str, dict[str, Any]]:
    objs = serving_group(ms, ms.template, 0, template_revision(ms.template), options or PodOptions())
    return {p["metadata"]["name"]: p for p in objs.pods}


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_seed_example_produces_exactly_kthenas_pod_names(seed_ms: ModelServing) -> None:
    assert list(_pods(seed_ms)) == SEED_PODS


def test_entry_pod_carries_every_kthena_label(seed_ms: ModelServing) -> None:
    pod = _pods(seed_ms)["sample-0-prefill-1-0"]
    prefill = seed_ms.template.roles[0]
    assert pod["metadata"]["labels"] == {
        L.NAME_LABEL: "sample",
        L.GROUP_NAME_LABEL: "sample-0",
        L.ROLE_LABEL: "prefill",
        L.ROLE_ID_LABEL: "prefill-1",
        L.REVISION_LABEL: template_revision(seed_ms.template),
        L.ROLE_TEMPLATE_HASH_LABEL: role_template_hash(prefill),
        L.ENTRY_LABEL: "true",
    }


def test_worker_pod_has_no_entry_label(seed_ms: ModelServing) -> None:
    assert L.ENTRY_LABEL not in _pods(seed_ms)["sample-0-prefill-1-1"]["metadata"]["labels"]


def test_worker_env_points_at_its_entry_pod(seed_ms: ModelServing) -> None:
    env = _env(_pods(seed_ms)["sample-0-decode-0-1"])
    assert env["GROUP_SIZE"] == "2"
    assert env["ENTRY_ADDRESS"] == "sample-0-decode-0-0.default"
    assert env["WORKER_INDEX"] == "1"


def test_injected_env_replaces_a_template_variable_of_the_same_name(seed_ms: ModelServing) -> None:
    pod = _pods(seed_ms)["sample-0-prefill-0-0"]
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert names == ["KEEP", "GROUP_SIZE", "ENTRY_ADDRESS", "WORKER_INDEX"]
    assert _env(pod)["WORKER_INDEX"] == "0"


def test_env_is_injected_into_init_containers(seed: dict[str, Any]) -> None:
    seed["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["initContainers"] = [{"name": "fetch", "image": "x"}]
    pod = _pods(parse_modelserving(seed))["sample-0-prefill-0-0"]
    assert [e["name"] for e in pod["spec"]["initContainers"][0]["env"]] == ["GROUP_SIZE", "ENTRY_ADDRESS", "WORKER_INDEX"]


def test_pods_join_their_podgroup_and_volcano_task(seed_ms: ModelServing) -> None:
    pod = _pods(seed_ms)["sample-0-prefill-1-1"]
    assert pod["metadata"]["annotations"] == {"scheduling.k8s.io/group-name": "sample-0",
                                              "volcano.sh/task-spec": "prefill-1"}
    assert pod["spec"]["schedulerName"] == "volcano"


def test_pods_are_owned_by_the_modelserving_as_controller(seed_ms: ModelServing) -> None:
    owner = _pods(seed_ms)["sample-0-decode-0-0"]["metadata"]["ownerReferences"]
    assert owner == [{"apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "ModelServing",
                      "name": "sample", "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]


def test_template_labels_are_merged_after_kthenas(seed: dict[str, Any]) -> None:
    seed["spec"]["template"]["roles"][1]["entryTemplate"]["metadata"] = {"labels": {"app": "llm"},
                                                                          "annotations": {"a": "b"}}
    pod = _pods(parse_modelserving(seed))["sample-0-decode-0-0"]
    assert pod["metadata"]["labels"]["app"] == "llm"
    assert pod["metadata"]["annotations"]["a"] == "b"


def test_placement_gate_is_added_only_for_caldera_placement(seed_ms: ModelServing) -> None:
    gated = _pods(seed_ms, PodOptions(placement_gate=True))["sample-0-prefill-0-0"]
    ungated = _pods(seed_ms, PodOptions(placement_gate=False))["sample-0-prefill-0-0"]
    assert gated["spec"]["schedulingGates"] == [{"name": "caldera.dev/placement"}]
    assert "schedulingGates" not in ungated["spec"]


def test_other_schedulers_get_no_podgroup_annotations(seed: dict[str, Any]) -> None:
    seed["spec"]["schedulerName"] = "default-scheduler"
    ms = parse_modelserving(seed)
    objs = serving_group(ms, ms.template, 0, "r", PodOptions())
    assert objs.podgroup is None
    assert "annotations" not in objs.pods[0]["metadata"]


def test_one_headless_service_per_role_replica_with_workers(seed_ms: ModelServing) -> None:
    objs = serving_group(seed_ms, seed_ms.template, 0, "r", PodOptions())
    assert [s["metadata"]["name"] for s in objs.services] == [
        "sample-0-prefill-0-0", "sample-0-prefill-1-0", "sample-0-decode-0-0"]
    svc = objs.services[1]
    assert svc["spec"] == {
        "clusterIP": "None",
        "selector": {L.GROUP_NAME_LABEL: "sample-0", L.ROLE_LABEL: "prefill", L.ROLE_ID_LABEL: "prefill-1",
                     L.ENTRY_LABEL: "true"},
        "publishNotReadyAddresses": True,
    }


def test_roles_without_workers_get_no_service(seed: dict[str, Any]) -> None:
    role = seed["spec"]["template"]["roles"][1]
    role["workerReplicas"] = 0
    del role["workerTemplate"]
    ms = parse_modelserving(seed)
    names = [s["metadata"]["name"] for s in serving_group(ms, ms.template, 0, "r", PodOptions()).services]
    assert "sample-0-decode-0-0" not in names


def test_seed_podgroup_matches_kthenas(seed_ms: ModelServing) -> None:
    pg = podgroup(seed_ms, seed_ms.template, 0)
    assert pg["metadata"]["name"] == "sample-0"
    assert pg["metadata"]["labels"] == {L.NAME_LABEL: "sample", L.GROUP_NAME_LABEL: "sample-0"}
    assert pg["metadata"]["annotations"] == {"scheduling.k8s.io/group-name": "sample-0"}
    role_policy = {"mode": "hard", "highestTierAllowed": 1}
    assert pg["spec"] == {
        "minMember": 6,
        "minResources": {"cpu": "12", "memory": "48Gi", "nvidia.com/gpu": "24"},
        "queue": "llm",
        "networkTopology": {"mode": "hard", "highestTierAllowed": 2},
        "subGroupPolicy": [
            {"name": "prefill",
             "labelSelector": {"matchLabels": {L.NAME_LABEL: "sample", L.ROLE_LABEL: "prefill"}},
             "matchLabelKeys": [L.ROLE_ID_LABEL], "subGroupSize": 2, "minSubGroups": 2,
             "networkTopology": role_policy},
            {"name": "decode",
             "labelSelector": {"matchLabels": {L.NAME_LABEL: "sample", L.ROLE_LABEL: "decode"}},
             "matchLabelKeys": [L.ROLE_ID_LABEL], "subGroupSize": 2, "minSubGroups": 1,
             "networkTopology": role_policy},
        ],
    }


def test_gang_policy_lowers_min_member_and_min_resources(seed: dict[str, Any]) -> None:
    seed["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"prefill": 1}}
    ms = parse_modelserving(seed)
    spec = podgroup(ms, ms.template, 0)["spec"]
    assert spec["minMember"] == 4
    assert spec["minResources"]["nvidia.com/gpu"] == "16"
    assert [p["minSubGroups"] for p in spec["subGroupPolicy"]] == [1, 1]


def test_podgroup_without_queue_annotation_leaves_queue_to_volcano(seed: dict[str, Any]) -> None:
    del seed["metadata"]["annotations"]
    ms = parse_modelserving(seed)
    assert "queue" not in podgroup(ms, ms.template, 0)["spec"]


def test_podgroup_without_subgroup_support_has_no_subgroup_policy(seed_ms: ModelServing) -> None:
    assert "subGroupPolicy" not in podgroup(seed_ms, seed_ms.template, 0, subgroups=False)["spec"]


def test_label_selector_picks_one_entry_pod_per_group(seed_ms: ModelServing) -> None:
    assert label_selector(seed_ms) == (
        "modelserving.volcano.sh/entry=true,modelserving.volcano.sh/name=sample,"
        "modelserving.volcano.sh/role=prefill,modelserving.volcano.sh/role-id=prefill-0")
