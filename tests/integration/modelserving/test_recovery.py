"""Recovery policies on pod deletion and on container failure (KWOK: the pod status is patched)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster


def _uids(ms_env: Any) -> dict[str, str]:
    return {n: p["metadata"]["uid"] for n, p in ms_env.live_pods().items()}


def _start(ms_env: Any, seed: dict[str, Any], policy: str) -> dict[str, str]:
    seed["spec"]["recoveryPolicy"] = policy
    ms_env.apply(seed)
    ms_env.wait_until("Available", ms_env.available, timeout=120)
    return _uids(ms_env)


def _fail_container(ms_env: Any, pod: str) -> None:
    """What a kubelet reports when the engine process exits non-zero and the pod is not restarted."""
    ms_env.core.patch_namespaced_pod_status(pod, ms_env.namespace, {"status": {
        "phase": "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{"name": "engine", "image": "registry.local/engine:v1", "imageID": "", "ready": False,
                               "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
    }})


def _recovered(ms_env: Any, before: dict[str, str], changed: set[str]) -> bool:
    now = _uids(ms_env)
    if set(now) != set(before) or not ms_env.running(set(before)):
        return False
    return {n for n in now if now[n] != before[n]} == changed


PREFILL_1 = {"sample-0-prefill-1-0", "sample-0-prefill-1-1"}


@pytest.mark.parametrize("trigger", ["pod deletion", "container failure"])
def test_role_recreate_replaces_the_whole_role_replica(ms_env: Any, seed: dict[str, Any], trigger: str) -> None:
    before = _start(ms_env, seed, "RoleRecreate")
    if trigger == "pod deletion":
        ms_env.core.delete_namespaced_pod("sample-0-prefill-1-1", ms_env.namespace)
    else:
        _fail_container(ms_env, "sample-0-prefill-1-1")
    ms_env.wait_until("prefill-1 recreated", lambda: _recovered(ms_env, before, PREFILL_1), timeout=120)


@pytest.mark.parametrize("trigger", ["pod deletion", "container failure"])
def test_servinggroup_recreate_replaces_the_whole_group(ms_env: Any, seed: dict[str, Any], trigger: str) -> None:
    before = _start(ms_env, seed, "ServingGroupRecreate")
    if trigger == "pod deletion":
        ms_env.core.delete_namespaced_pod("sample-0-decode-0-0", ms_env.namespace)
    else:
        _fail_container(ms_env, "sample-0-decode-0-0")
    ms_env.wait_until("group recreated", lambda: _recovered(ms_env, before, set(before)), timeout=120)


@pytest.mark.parametrize("trigger", ["pod deletion", "container failure"])
def test_none_policy_replaces_only_the_lost_pod(ms_env: Any, seed: dict[str, Any], trigger: str) -> None:
    before = _start(ms_env, seed, "None")
    if trigger == "pod deletion":
        ms_env.core.delete_namespaced_pod("sample-0-prefill-0-1", ms_env.namespace)
    else:
        _fail_container(ms_env, "sample-0-prefill-0-1")
    ms_env.wait_until("the pod recreated", lambda: _recovered(ms_env, before, {"sample-0-prefill-0-1"}), timeout=120)


def test_failed_pod_survives_its_restart_grace_period(ms_env: Any, seed: dict[str, Any]) -> None:
    seed["spec"]["template"]["restartGracePeriodSeconds"] = 3600
    before = _start(ms_env, seed, "RoleRecreate")
    _fail_container(ms_env, "sample-0-decode-0-1")
    ms_env.wait_until("Progressing", lambda: any(
        c["type"] == "Progressing" and c["status"] == "True"
        for c in (ms_env.ms().get("status") or {}).get("conditions") or []), timeout=60)
    assert _uids(ms_env) == before


def test_deleting_the_modelserving_cascades(ms_env: Any, seed: dict[str, Any]) -> None:
    _start(ms_env, seed, "RoleRecreate")
    ms_env.custom.delete_namespaced_custom_object("workload.serving.volcano.sh", "v1alpha1", ms_env.namespace,
                                                  "modelservings", "sample")
    ms_env.wait_until("children gone", lambda: not ms_env.pods() and not ms_env.services() and not ms_env.podgroups(),
                      timeout=120)
    apps = client.AppsV1Api(ms_env.api)
    ms_env.wait_until("ControllerRevisions gone", lambda: not apps.list_namespaced_controller_revision(
        ms_env.namespace, label_selector="modelserving.volcano.sh/name=sample").items, timeout=60)
