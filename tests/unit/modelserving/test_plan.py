from __future__ import annotations

from typing import Any

from modelserving import labels as L
from modelserving.desired import PodOptions
from modelserving.plan import Create, DeleteMatching, Patch, plan, podgroup_spec_patch
from modelserving.spec import parse_modelserving

ObjectStore = Any  # the conftest fixture's ObjectStore (importlib mode cannot import conftest)

SEED_PODS = {"sample-0-prefill-0-0", "sample-0-prefill-0-1", "sample-0-prefill-1-0", "sample-0-prefill-1-1",
             "sample-0-decode-0-0", "sample-0-decode-0-1"}


def _groups(store: ObjectStore) -> set[str]:
    return {p["metadata"]["labels"][L.GROUP_NAME_LABEL] for p in store.obs.pods.values()}


def _image(store: ObjectStore, pod: str) -> str:
    return str(store.obs.pods[pod]["spec"]["containers"][0]["image"])


def _set_image(seed: dict[str, Any], image: str) -> None:
    for role in seed["spec"]["template"]["roles"]:
        role["entryTemplate"]["spec"]["containers"][0]["image"] = image
        role["workerTemplate"]["spec"]["containers"][0]["image"] = image


def test_first_reconcile_creates_the_seed_group(cluster: ObjectStore) -> None:
    cluster.reconcile()
    assert set(cluster.obs.pods) == SEED_PODS
    assert set(cluster.obs.services) == {"sample-0-prefill-0-0", "sample-0-prefill-1-0", "sample-0-decode-0-0"}
    assert set(cluster.obs.podgroups) == {"sample-0"}
    assert len(cluster.obs.revisions) == 1


def test_controller_revision_and_podgroup_are_created_before_pods(cluster: ObjectStore) -> None:
    kinds = [a.kind for a in plan(cluster.ms, cluster.obs, PodOptions(), 0).actions if isinstance(a, Create)]
    assert kinds.index("ControllerRevision") < kinds.index("PodGroup") < kinds.index("Pod")


def test_steady_state_writes_nothing(cluster: ObjectStore) -> None:
    cluster.converge()
    p = plan(cluster.ms, cluster.obs, PodOptions(), cluster.now + 3600)
    assert p.actions == [] and p.status_patch == {}


def test_status_reports_available_groups_and_selector(cluster: ObjectStore) -> None:
    cluster.converge()
    status = cluster.manifest["status"]
    assert (status["replicas"], status["availableReplicas"], status["updatedReplicas"]) == (1, 1, 1)
    assert [c["type"] for c in status["conditions"] if c["status"] == "True"] == ["Available"]
    assert status["observedGeneration"] == 1
    assert status["currentRevision"] == status["updateRevision"]


def test_status_is_progressing_while_pods_start(cluster: ObjectStore) -> None:
    cluster.reconcile()
    cluster.reconcile()
    assert [c["type"] for c in cluster.manifest["status"]["conditions"] if c["status"] == "True"] == ["Progressing"]


def test_scale_groups_up_and_down(cluster: ObjectStore) -> None:
    cluster.converge()
    cluster.manifest["spec"]["replicas"] = 3
    cluster.converge()
    assert _groups(cluster) == {"sample-0", "sample-1", "sample-2"}
    assert set(cluster.obs.podgroups) == {"sample-0", "sample-1", "sample-2"}
    cluster.manifest["spec"]["replicas"] = 1
    cluster.converge()
    assert _groups(cluster) == {"sample-0"}
    assert set(cluster.obs.podgroups) == {"sample-0"}
    assert len(cluster.obs.services) == 3


def test_scale_down_removes_a_not_running_group_first(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["replicas"] = 3
    cluster.converge()
    cluster.obs.pods["sample-0-decode-0-1"]["status"] = {"phase": "Pending"}
    cluster.manifest["spec"]["replicas"] = 2
    cluster.reconcile()
    assert _groups(cluster) == {"sample-1", "sample-2"}


def test_scale_role_replicas_without_touching_other_roles(cluster: ObjectStore) -> None:
    cluster.converge()
    decode_uids = {n: p["metadata"]["uid"] for n, p in cluster.obs.pods.items() if "decode" in n}
    cluster.manifest["spec"]["template"]["roles"][0]["replicas"] = 3
    cluster.converge()
    assert {"sample-0-prefill-2-0", "sample-0-prefill-2-1"} <= set(cluster.obs.pods)
    assert "sample-0-prefill-2-0" in cluster.obs.services
    assert cluster.obs.podgroups["sample-0"]["spec"]["minMember"] == 8
    cluster.manifest["spec"]["template"]["roles"][0]["replicas"] = 1
    cluster.converge()
    assert {n for n in cluster.obs.pods if "prefill" in n} == {"sample-0-prefill-0-0", "sample-0-prefill-0-1"}
    assert {n: p["metadata"]["uid"] for n, p in cluster.obs.pods.items() if "decode" in n} == decode_uids


def test_role_scaling_is_not_a_new_revision(cluster: ObjectStore) -> None:
    cluster.converge()
    rev = cluster.manifest["status"]["updateRevision"]
    cluster.manifest["spec"]["template"]["roles"][0]["replicas"] = 3
    cluster.converge()
    assert cluster.manifest["status"]["updateRevision"] == rev


def _rollout_unavailability(cluster: ObjectStore, ready_per_round: int = 1) -> int:
    """Drive a rollout, bringing at most one new group up per round; the worst unavailability seen."""
    worst = 0
    for _ in range(40):
        p = cluster.reconcile()
        pending = sorted({p_["metadata"]["labels"][L.GROUP_NAME_LABEL] for p_ in cluster.obs.pods.values()
                          if "status" not in p_})
        for g in pending[:ready_per_round]:
            cluster.set_running(lambda n, g=g: n.startswith(g + "-"))
        ready = {p_["metadata"]["labels"][L.GROUP_NAME_LABEL] for p_ in cluster.obs.pods.values()}
        not_ready = {p_["metadata"]["labels"][L.GROUP_NAME_LABEL] for p_ in cluster.obs.pods.values()
                     if "status" not in p_}
        groups = len(ready - not_ready)
        worst = max(worst, cluster.ms.replicas - groups)
        if not p.actions and not p.status_patch and not pending:
            break
    return worst


def test_rolling_update_replaces_every_group(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["replicas"] = 3
    cluster.converge()
    _set_image(cluster.manifest, "caldera/enginesim:v2")
    cluster.manifest["metadata"]["generation"] = 2
    _rollout_unavailability(cluster)
    cluster.converge()
    assert all(_image(cluster, n) == "caldera/enginesim:v2" for n in cluster.obs.pods)
    status = cluster.manifest["status"]
    assert status["currentRevision"] == status["updateRevision"]
    assert status["updatedReplicas"] == 3
    assert len(cluster.obs.revisions) == 1


def test_rolling_update_keeps_at_most_max_unavailable_groups_down(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["replicas"] = 4
    cluster.converge()
    _set_image(cluster.manifest, "caldera/enginesim:v2")
    assert _rollout_unavailability(cluster) == 1


def test_rolling_update_deletes_the_highest_ordinal_first(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["replicas"] = 3
    cluster.converge()
    _set_image(cluster.manifest, "caldera/enginesim:v2")
    deletes = [a for a in cluster.reconcile().actions if isinstance(a, DeleteMatching)]
    assert [d.labels[L.GROUP_NAME_LABEL] for d in deletes] == ["sample-2"]


def test_partition_protects_the_first_groups(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["replicas"] = 3
    cluster.manifest["spec"]["rolloutStrategy"] = {"rollingUpdateConfiguration": {"partition": 2}}
    cluster.converge()
    _set_image(cluster.manifest, "caldera/enginesim:v2")
    _rollout_unavailability(cluster)
    cluster.converge()
    assert _image(cluster, "sample-0-prefill-0-0") == "caldera/enginesim:latest"
    assert _image(cluster, "sample-1-prefill-0-0") == "caldera/enginesim:latest"
    assert _image(cluster, "sample-2-prefill-0-0") == "caldera/enginesim:v2"
    assert [c["type"] for c in cluster.manifest["status"]["conditions"] if c["status"] == "True"] == ["Available"]


def test_partition_protected_group_is_recreated_from_its_controller_revision(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["replicas"] = 2
    cluster.manifest["spec"]["rolloutStrategy"] = {"rollingUpdateConfiguration": {"partition": 1}}
    cluster.converge()
    _set_image(cluster.manifest, "caldera/enginesim:v2")
    _rollout_unavailability(cluster)
    cluster.converge()
    for name in [n for n in cluster.obs.pods if n.startswith("sample-0-")]:
        del cluster.obs.pods[name]
    cluster.converge()
    assert _image(cluster, "sample-0-decode-0-0") == "caldera/enginesim:latest"


def test_gang_policy_change_rolls_out(cluster: ObjectStore) -> None:
    cluster.converge()
    rev = cluster.manifest["status"]["updateRevision"]
    cluster.manifest["spec"]["template"]["networkTopology"]["groupPolicy"]["highestTierAllowed"] = 1
    p = cluster.reconcile()
    assert cluster.manifest["status"]["updateRevision"] != rev
    assert any(isinstance(a, DeleteMatching) for a in p.actions)


def test_role_rolling_update_recreates_only_changed_roles(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["rolloutStrategy"] = {"type": "RoleRollingUpdate"}
    cluster.converge()
    prefill_uids = {n: p["metadata"]["uid"] for n, p in cluster.obs.pods.items() if "prefill" in n}
    decode = cluster.manifest["spec"]["template"]["roles"][1]
    decode["entryTemplate"]["spec"]["containers"][0]["image"] = "caldera/enginesim:v2"
    cluster.converge()
    assert _image(cluster, "sample-0-decode-0-0") == "caldera/enginesim:v2"
    assert {n: p["metadata"]["uid"] for n, p in cluster.obs.pods.items() if "prefill" in n} == prefill_uids
    assert cluster.manifest["status"]["updatedReplicas"] == 1


def test_role_recreate_deletes_the_rest_of_the_role_replica(cluster: ObjectStore) -> None:
    cluster.converge()
    del cluster.obs.pods["sample-0-prefill-1-1"]
    deletes = [a for a in cluster.reconcile().actions if isinstance(a, DeleteMatching)]
    assert [dict(d.labels) for d in deletes] == [{L.NAME_LABEL: "sample", L.GROUP_NAME_LABEL: "sample-0",
                                                   L.ROLE_ID_LABEL: "prefill-1"}]
    cluster.converge()
    assert set(cluster.obs.pods) == SEED_PODS


def test_servinggroup_recreate_deletes_the_whole_group(seed: dict[str, Any], make_store: Any) -> None:
    seed["spec"]["recoveryPolicy"] = "ServingGroupRecreate"
    store = make_store(seed)
    store.converge()
    del store.obs.pods["sample-0-decode-0-1"]
    p = store.reconcile()
    assert [dict(a.labels) for a in p.actions if isinstance(a, DeleteMatching)] == [
        {L.NAME_LABEL: "sample", L.GROUP_NAME_LABEL: "sample-0"}]
    assert store.obs.pods == {} and store.obs.podgroups == {}
    store.converge()
    assert set(store.obs.pods) == SEED_PODS


def test_none_policy_recreates_only_the_missing_pod(seed: dict[str, Any], make_store: Any) -> None:
    seed["spec"]["recoveryPolicy"] = "None"
    store = make_store(seed)
    store.converge()
    uids = {n: p["metadata"]["uid"] for n, p in store.obs.pods.items()}
    del store.obs.pods["sample-0-prefill-0-1"]
    p = store.reconcile()
    assert [a.body["metadata"]["name"] for a in p.actions if isinstance(a, Create)] == ["sample-0-prefill-0-1"]
    assert all(store.obs.pods[n]["metadata"]["uid"] == u for n, u in uids.items() if n != "sample-0-prefill-0-1")


def test_failed_pod_is_deleted_after_restart_grace_period(seed: dict[str, Any], make_store: Any) -> None:
    seed["spec"]["template"]["restartGracePeriodSeconds"] = 30
    store = make_store(seed)
    store.converge()
    store.obs.pods["sample-0-decode-0-0"]["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "1970-01-12T13:46:40Z"}],
        "containerStatuses": [{"name": "engine", "restartCount": 1, "ready": False}],
    }
    p = store.reconcile()
    assert p.requeue_after == 30 and not p.actions
    store.now += 31
    p = store.reconcile()
    assert [(a.kind, a.name) for a in p.actions if not isinstance(a, (Create, DeleteMatching))] == [
        ("Pod", "sample-0-decode-0-0")]


def test_crash_after_partial_creation_converges(cluster: ObjectStore) -> None:
    p = plan(cluster.ms, cluster.obs, PodOptions(), cluster.now)
    p.actions = p.actions[:4]  # the process died after four writes
    cluster.apply(p)
    cluster.converge()
    assert set(cluster.obs.pods) == SEED_PODS
    assert set(cluster.obs.podgroups) == {"sample-0"}


def test_podgroup_drift_is_patched_back(cluster: ObjectStore) -> None:
    cluster.converge()
    cluster.obs.podgroups["sample-0"]["spec"]["minMember"] = 1
    patches = [a for a in cluster.reconcile().actions if isinstance(a, Patch)]
    assert [(p.name, p.patch) for p in patches] == [("sample-0", {"spec": {"minMember": 6}})]


def test_volcano_defaults_are_not_drift() -> None:
    want = {"minMember": 2, "minResources": {"cpu": "2", "memory": "8Gi"}, "networkTopology": {"highestTierAllowed": 2}}
    have = {"minMember": 2, "minResources": {"cpu": "2000m", "memory": "8589934592"}, "queue": "default",
            "networkTopology": {"mode": "hard", "highestTierAllowed": 2}}
    assert podgroup_spec_patch(have, want) == {}


def test_stray_service_is_deleted(cluster: ObjectStore) -> None:
    cluster.converge()
    cluster.obs.services["sample-0-prefill-7-0"] = {"metadata": {"name": "sample-0-prefill-7-0",
                                                                 "labels": {L.GROUP_NAME_LABEL: "sample-0"}}}
    actions = cluster.reconcile().actions
    assert [(a.kind, getattr(a, "name", None)) for a in actions] == [("Service", "sample-0-prefill-7-0")]


def test_bad_spec_names_the_field(seed: dict[str, Any]) -> None:
    seed["spec"]["template"]["roles"][0]["workerTemplate"] = None
    try:
        parse_modelserving(seed)
    except ValueError as exc:
        assert "spec.template.roles[0].workerTemplate" in str(exc)
    else:
        raise AssertionError("expected a SpecError")


def test_group_with_only_its_podgroup_is_completed_not_rolled(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["replicas"] = 2
    cluster.converge()
    _set_image(cluster.manifest, "caldera/enginesim:v2")
    # A crash between recreating group 1's PodGroup and its pods, in the middle of the rollout.
    for name in [n for n in cluster.obs.pods if n.startswith("sample-1-")]:
        del cluster.obs.pods[name]
    p = cluster.reconcile()
    assert not [a for a in p.actions if isinstance(a, DeleteMatching) and a.labels[L.GROUP_NAME_LABEL] == "sample-1"]
    assert _image(cluster, "sample-1-prefill-0-0") == "caldera/enginesim:v2"
    cluster.converge()
    assert all(_image(cluster, n) == "caldera/enginesim:v2" for n in cluster.obs.pods)


def test_scale_to_zero_removes_every_group_and_stays_available(cluster: ObjectStore) -> None:
    cluster.converge()
    cluster.manifest["spec"]["replicas"] = 0
    cluster.converge()
    assert cluster.obs.pods == {} and cluster.obs.services == {} and cluster.obs.podgroups == {}
    assert cluster.manifest["status"]["replicas"] == 0


def test_role_partition_protects_the_first_role_replicas(cluster: ObjectStore) -> None:
    cluster.manifest["spec"]["rolloutStrategy"] = {"type": "RoleRollingUpdate"}
    cluster.manifest["spec"]["template"]["roles"][0]["partition"] = 1
    cluster.converge()
    _set_image(cluster.manifest, "caldera/enginesim:v2")
    cluster.converge()
    assert _image(cluster, "sample-0-prefill-0-0") == "caldera/enginesim:latest"
    assert _image(cluster, "sample-0-prefill-1-0") == "caldera/enginesim:v2"
    assert _image(cluster, "sample-0-decode-0-0") == "caldera/enginesim:v2"


def test_invalid_int_or_percent_names_the_field(seed: dict[str, Any]) -> None:
    seed["spec"]["rolloutStrategy"] = {"rollingUpdateConfiguration": {"maxUnavailable": "lots"}}
    try:
        parse_modelserving(seed)
    except ValueError as exc:
        assert "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable" in str(exc)
    else:
        raise AssertionError("expected a SpecError")
