"""With `--placement=caldera` the seed pods wait behind the placement gate, then land within the tiers."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster


def test_seed_pods_are_created_behind_the_placement_gate(caldera_env: Any, seed: dict[str, Any]) -> None:
    caldera_env.apply(seed)
    pods = caldera_env.wait_until("six pods", lambda: (p := caldera_env.pods()) and len(p) == 6 and p)
    # Either still gated, or released by the placement controller with a node pinned.
    for pod in pods.values():
        gated = [g["name"] for g in pod["spec"].get("schedulingGates") or []] == ["caldera.dev/placement"]
        assert gated or pod["spec"].get("affinity") or pod["spec"].get("nodeName"), pod["metadata"]["name"]


def test_caldera_placement_puts_each_role_within_one_leaf(caldera_env: Any, seed: dict[str, Any]) -> None:
    caldera_env.apply(seed)
    caldera_env.wait_until("seed pods Running", lambda: caldera_env.running(caldera_env.seed_pod_names()), timeout=180)
    caldera_env.wait_until("Available", caldera_env.available, timeout=60)
    nodes = {n.metadata.name: n.metadata.labels for n in client.CoreV1Api(caldera_env.api).list_node().items}
    pods = caldera_env.pods()
    for role in ("prefill", "decode"):
        leaves = {nodes[p["spec"]["nodeName"]]["caldera.dev/leaf"] for n, p in pods.items() if f"-{role}-" in n}
        assert len(leaves) == 1, f"{role} spread over leaves {leaves}"
