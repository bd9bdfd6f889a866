"""With `--placement=caldera` the seed pods wait behind the placement gate, then land within the tiers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch

pytestmark = pytest.mark.cluster


def test_seed_pods_are_created_behind_the_placement_gate(caldera_env: Any, seed: dict[str, Any]) -> None:
    core = client.CoreV1Api(caldera_env.api)
    rv = json.loads(core.list_namespaced_pod(caldera_env.namespace, _preload_content=False).data)["metadata"][
        "resourceVersion"]
    caldera_env.apply(seed)
    gates: dict[str, list[str]] = {}
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, caldera_env.namespace, resource_version=rv, timeout_seconds=60):
        if event["type"] == "ADDED":
            pod = event["raw_object"]
            gates[pod["metadata"]["name"]] = [g["name"] for g in pod["spec"].get("schedulingGates") or []]
        if len(gates) == 6:
            w.stop()
    assert gates == {name: ["caldera.dev/placement"] for name in caldera_env.seed_pod_names()}


def test_caldera_placement_puts_each_role_within_one_leaf(caldera_env: Any, seed: dict[str, Any]) -> None:
    caldera_env.apply(seed)
    caldera_env.wait_until("seed pods Running", lambda: caldera_env.running(caldera_env.seed_pod_names()), timeout=180)
    caldera_env.wait_until("Available", caldera_env.available, timeout=60)
    nodes = {n.metadata.name: n.metadata.labels for n in client.CoreV1Api(caldera_env.api).list_node().items}
    pods = caldera_env.pods()
    for role in ("prefill", "decode"):
        leaves = {nodes[p["spec"]["nodeName"]]["caldera.dev/leaf"] for n, p in pods.items() if f"-{role}-" in n}
        assert len(leaves) == 1, f"{role} spread over leaves {leaves}"
