from __future__ import annotations

from typing import Any

from modelserving.lws import lws_status, modelserving_from_lws, spec_differs
from modelserving.spec import parse_modelserving


def _lws(leader: bool = True) -> dict[str, Any]:
    worker = {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "w", "image": "x"}]}}
    lwt: dict[str, Any] = {"size": 4, "workerTemplate": worker}
    if leader:
        lwt["leaderTemplate"] = {"spec": {"containers": [{"name": "l", "image": "y"}]}}
    return {"metadata": {"name": "vllm", "namespace": "ns", "uid": "u1"},
            "spec": {"replicas": 3, "leaderWorkerTemplate": lwt}}


def test_lws_becomes_one_default_role_with_size_minus_one_workers() -> None:
    ms = parse_modelserving(modelserving_from_lws(_lws()))
    assert ms.replicas == 3
    (role,) = ms.template.roles
    assert (role.name, role.replicas, role.worker_replicas) == ("default", 1, 3)
    assert role.entry_template["spec"]["containers"][0]["name"] == "l"


def test_lws_without_leader_template_uses_the_worker_template_for_the_entry() -> None:
    ms = parse_modelserving(modelserving_from_lws(_lws(leader=False)))
    assert ms.template.roles[0].entry_template["spec"]["containers"][0]["name"] == "w"


def test_modelserving_is_owned_by_the_lws() -> None:
    owner = modelserving_from_lws(_lws())["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("LeaderWorkerSet", "vllm", "u1", True)


def test_api_defaults_are_not_a_spec_difference() -> None:
    desired = modelserving_from_lws(_lws())
    current = {"spec": {**desired["spec"], "schedulerName": "volcano", "recoveryPolicy": "RoleRecreate"}}
    assert not spec_differs(current, desired)
    desired["spec"]["replicas"] = 5
    assert spec_differs(current, desired)


def test_lws_status_mirrors_the_modelserving() -> None:
    assert lws_status({"status": {"replicas": 3, "availableReplicas": 2}}) == {"replicas": 3, "readyReplicas": 2}
