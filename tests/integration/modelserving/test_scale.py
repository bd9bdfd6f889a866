"""Scaling ServingGroups (through the /scale subresource, as `kubectl scale` does) and role replicas."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.cluster


def _groups(ms_env: Any) -> set[str]:
    return {p["metadata"]["labels"]["modelserving.volcano.sh/group-name"] for p in ms_env.live_pods().values()}


def test_scale_servinggroups_1_to_3_to_1(ms_env: Any, seed: dict[str, Any]) -> None:
    ms_env.apply(seed)
    ms_env.wait_until("Available at 1", ms_env.available, timeout=120)
    ms_env.scale(3)
    ms_env.wait_until("Available at 3", ms_env.available, timeout=120)
    assert _groups(ms_env) == {"sample-0", "sample-1", "sample-2"}
    assert set(ms_env.podgroups()) == {"sample-0", "sample-1", "sample-2"}
    assert len(ms_env.services()) == 9
    ms_env.scale(1)
    ms_env.wait_until("one group left", lambda: _groups(ms_env) == {"sample-0"} and set(ms_env.podgroups()) == {"sample-0"}
                      and len(ms_env.services()) == 3, timeout=120)
    ms_env.wait_until("Available at 1 again", ms_env.available, timeout=60)


def test_scale_subresource_reports_replicas_and_selector(ms_env: Any, seed: dict[str, Any]) -> None:
    ms_env.apply(seed)
    ms_env.wait_until("Available", ms_env.available, timeout=120)
    scale = ms_env.custom.get_namespaced_custom_object_scale("workload.serving.volcano.sh", "v1alpha1",
                                                             ms_env.namespace, "modelservings", "sample")
    assert scale["status"]["replicas"] == 1
    assert "modelserving.volcano.sh/role-id=prefill-0" in scale["status"]["selector"]


def test_scale_role_replicas_up_and_down(ms_env: Any, seed: dict[str, Any]) -> None:
    ms_env.apply(seed)
    ms_env.wait_until("Available", ms_env.available, timeout=120)
    decode_uids = {n: p["metadata"]["uid"] for n, p in ms_env.pods().items() if "-decode-" in n}
    roles = ms_env.ms()["spec"]["template"]["roles"]
    roles[0]["replicas"] = 3
    ms_env.patch_ms({"spec": {"template": {"roles": roles}}})
    ms_env.wait_until("prefill-2 running", lambda: ms_env.running(
        ms_env.seed_pod_names() | {"sample-0-prefill-2-0", "sample-0-prefill-2-1"}), timeout=120)
    assert ms_env.podgroups()["sample-0"]["spec"]["minMember"] == 8
    assert "sample-0-prefill-2-0" in ms_env.services()
    roles[0]["replicas"] = 1
    ms_env.patch_ms({"spec": {"template": {"roles": roles}}})
    ms_env.wait_until("prefill back to one replica", lambda: {n for n in ms_env.live_pods() if "-prefill-" in n}
                      == {"sample-0-prefill-0-0", "sample-0-prefill-0-1"}, timeout=120)
    assert {n: p["metadata"]["uid"] for n, p in ms_env.pods().items() if "-decode-" in n} == decode_uids
    ms_env.wait_until("the prefill-1 and -2 services gone", lambda: set(ms_env.services()) == {
        "sample-0-prefill-0-0", "sample-0-decode-0-0"}, timeout=60)
