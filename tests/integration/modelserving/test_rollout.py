"""Rolling updates, watched through a pod watch stream rather than sampled."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes import watch

pytestmark = pytest.mark.cluster

GROUP_LABEL = "modelserving.volcano.sh/group-name"


class Availability:
    """Replays a pod watch stream and records the worst number of unavailable ServingGroups."""

    def __init__(self, ms_env: Any, replicas: int, pods_per_group: int) -> None:
        self.env, self.replicas, self.size = ms_env, replicas, pods_per_group
        self.pods: dict[str, dict[str, Any]] = {}
        self.worst = 0
        self.events = 0
        self.stop = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ready(self, pod: dict[str, Any]) -> bool:
        return (not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") == "Running"
                and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or []))

    def unavailable(self) -> int:
        ready: dict[str, int] = {}
        for pod in self.pods.values():
            if self._ready(pod):
                group = pod["metadata"]["labels"][GROUP_LABEL]
                ready[group] = ready.get(group, 0) + 1
        return self.replicas - sum(1 for n in ready.values() if n == self.size)

    def _run(self) -> None:
        w = watch.Watch()
        initial = self.env.core.list_namespaced_pod(self.env.namespace, _preload_content=False)
        listing = json.loads(initial.data)
        self.pods = {p["metadata"]["name"]: p for p in listing["items"]}
        self.started.set()
        for event in w.stream(self.env.core.list_namespaced_pod, self.env.namespace,
                              resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=300):
            obj = event["raw_object"]
            name = obj["metadata"]["name"]
            if event["type"] == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = obj
            self.events += 1
            self.worst = max(self.worst, self.unavailable())
            if self.stop.is_set():
                w.stop()
                return

    def __enter__(self) -> Availability:
        self.thread.start()
        self.started.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        # Any event ends the stream now; the controller's status patches do not reach pods, so nudge one.
        self.env.core.patch_namespaced_pod(next(iter(self.pods)), self.env.namespace,
                                           {"metadata": {"annotations": {"watch-stop": "1"}}})
        self.thread.join(30)


def _images(ms_env: Any) -> set[str]:
    return {p["spec"]["containers"][0]["image"] for p in ms_env.live_pods().values()}


def test_rolling_update_never_has_more_than_max_unavailable_groups_down(ms_env: Any, seed: dict[str, Any]) -> None:
    seed["spec"]["replicas"] = 3
    ms_env.apply(seed)
    ms_env.wait_until("Available", ms_env.available, timeout=180)
    with Availability(ms_env, replicas=3, pods_per_group=6) as seen:
        ms_env.set_image("registry.local/engine:v2")
        ms_env.wait_until("rollout done", lambda: ms_env.available() and _images(ms_env) == {"registry.local/engine:v2"}
                          and len(ms_env.live_pods()) == 18, timeout=300)
    assert seen.events > 0
    assert seen.worst == 1
    status = ms_env.ms()["status"]
    assert status["currentRevision"] == status["updateRevision"]


def test_partition_keeps_the_first_groups_on_the_old_revision(ms_env: Any, seed: dict[str, Any]) -> None:
    seed["spec"]["replicas"] = 3
    seed["spec"]["rolloutStrategy"] = {"type": "ServingGroupRollingUpdate",
                                       "rollingUpdateConfiguration": {"maxUnavailable": 1, "partition": 2}}
    ms_env.apply(seed)
    ms_env.wait_until("Available", ms_env.available, timeout=180)
    old_uids = {n: p["metadata"]["uid"] for n, p in ms_env.pods().items() if not n.startswith("sample-2-")}
    ms_env.set_image("registry.local/engine:v2")

    def done() -> bool:
        pods = ms_env.live_pods()
        return len(pods) == 18 and all(p["spec"]["containers"][0]["image"] == "registry.local/engine:v2"
                                       for n, p in pods.items() if n.startswith("sample-2-")) and ms_env.running(set(pods))

    ms_env.wait_until("group 2 updated", done, timeout=180)
    assert {n: p["metadata"]["uid"] for n, p in ms_env.pods().items() if not n.startswith("sample-2-")} == old_uids


def test_role_rolling_update_replaces_only_the_changed_role(ms_env: Any, seed: dict[str, Any]) -> None:
    seed["spec"]["rolloutStrategy"] = {"type": "RoleRollingUpdate"}
    ms_env.apply(seed)
    ms_env.wait_until("Available", ms_env.available, timeout=120)
    prefill = {n: p["metadata"]["uid"] for n, p in ms_env.pods().items() if "-prefill-" in n}
    roles = ms_env.ms()["spec"]["template"]["roles"]
    roles[1]["entryTemplate"]["spec"]["containers"][0]["image"] = "registry.local/engine:v2"
    ms_env.patch_ms({"spec": {"template": {"roles": roles}}})
    ms_env.wait_until("decode entry updated", lambda: (p := ms_env.live_pods().get("sample-0-decode-0-0"))
                      and p["spec"]["containers"][0]["image"] == "registry.local/engine:v2", timeout=120)
    ms_env.wait_until("Available", ms_env.available, timeout=120)
    assert {n: p["metadata"]["uid"] for n, p in ms_env.pods().items() if "-prefill-" in n} == prefill
