"""The autoscaler never fights another autoscaler: an HPA on the same ModelServing makes it
refuse, with a condition, and leave the replicas alone."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from caldera.localcluster import wait

pytestmark = pytest.mark.cluster


def test_an_hpa_on_the_same_target_is_refused_with_a_condition(as_env: Any) -> None:
    env = as_env
    env.create("modelservings", env.modelserving("llm", [env.engine_role("engine")], replicas=2))
    hpa: Any = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "other"},
        "spec": {"scaleTargetRef": {"apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "ModelServing",
                                    "name": "llm"},
                 "minReplicas": 2, "maxReplicas": 3,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]}}
    client.AutoscalingV2Api(env.api).create_namespaced_horizontal_pod_autoscaler(env.namespace, hpa)
    env.create("autoscalingpolicies", {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "AutoscalingPolicy",
        "metadata": {"name": "kpa"},
        "spec": {"metrics": [{"name": "vllm:num_requests_running", "targetValue": "1"}],
                 "homogeneousTarget": {"target": {"targetRef": {"kind": "ModelServing", "name": "llm"}},
                                       "minReplicas": 1, "maxReplicas": 1}}})

    def refused() -> dict[str, Any] | None:
        conditions = (env.get("autoscalingpolicies", "kpa").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "AbleToScale" and c["status"] == "False"), None)

    condition = wait.until(refused, 60, "AbleToScale=False")
    assert condition["reason"] == "ConflictingAutoscaler"
    assert "HorizontalPodAutoscaler/other" in condition["message"]
    assert env.replicas("llm") == 2  # maxReplicas 1 would have scaled it down
