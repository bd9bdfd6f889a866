"""Heterogeneous scaling: the optimiser moves the pool to the cheaper variant per unit of
capacity once it has room, and never asks for a variant whose GPU type has no free GPUs."""

from __future__ import annotations

from typing import Any

import pytest

from caldera.localcluster import wait

pytestmark = pytest.mark.cluster

CAPACITY = "autoscaling.caldera.dev/capacity"
GPU_TYPE = "autoscaling.caldera.dev/gpu-type"


def param(name: str, cost: int, lo: int, hi: int, namespace: str, prometheus_url: str) -> dict[str, Any]:
    query = (f'sum(vllm:num_requests_running{{namespace="{namespace}",modelserving_volcano_sh_name="{name}"}}) '
             f'+ sum(vllm:num_requests_waiting{{namespace="{namespace}",modelserving_volcano_sh_name="{name}"}})')
    return {"target": {"targetRef": {"kind": "ModelServing", "name": name},
                       "metricSources": {"in_flight": {"prometheus": {"serverURL": prometheus_url, "query": query}}}},
            "cost": cost, "minReplicas": lo, "maxReplicas": hi}


def policy(namespace: str, prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "AutoscalingPolicy",
        "metadata": {"name": "pool", "annotations": {"autoscaling.caldera.dev/stable-window": "20s",
                                                     "autoscaling.caldera.dev/panic-window": "4s"}},
        "spec": {
            "metrics": [{"name": "in_flight", "targetValue": "2"}],
            "behavior": {"scaleDown": {"instances": 0, "percent": 100, "period": "2s", "stabilizationWindow": "10s"}},
            "heterogeneousTarget": {"costExpansionRatePercent": 200, "params": [
                param("small", 100, 0, 4, namespace, prometheus_url),
                param("big", 180, 0, 2, namespace, prometheus_url),
                param("elsewhere", 50, 0, 4, namespace, prometheus_url),
            ]},
        },
    }


def test_pool_shifts_to_the_cheaper_variant_and_skips_one_without_gpus(as_env: Any) -> None:
    env = as_env
    # small: 1 unit for 100; big: 3 units for 180 (cheaper per unit); elsewhere: cheapest of all,
    # but its GPU type has no nodes in this cluster, so it can never be placed.
    env.create("modelservings", env.modelserving("small", [env.engine_role("engine")], replicas=3,
                                                 annotations={CAPACITY: "1"}))
    env.create("modelservings", env.modelserving("big", [env.engine_role("engine")], replicas=0,
                                                 annotations={CAPACITY: "3"}))
    env.create("modelservings", env.modelserving("elsewhere", [env.engine_role("engine", gpu_type="NVIDIA-A100-SXM4-80GB")],
                                                 replicas=0, annotations={CAPACITY: "3", GPU_TYPE: "NVIDIA-A100-SXM4-80GB"}))
    urls = env.serving("small", 3)
    env.create("autoscalingpolicies", policy(env.namespace, env.cluster.prometheus_url))
    load = env.Load(urls, concurrency=6).start()  # 3 units of demand
    try:
        wait.until(lambda: env.replicas("big") == 1, 120, "one big replica asked for")
        env.serving("big", 1)
        wait.until(lambda: env.replicas("small") == 0, 120, "small replicas released once big serves")
    finally:
        load.stop()
    assert env.replicas("elsewhere") == 0
    status = env.get("autoscalingpolicies", "pool")["status"]
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Ready")
    assert "elsewhere" in message and "placement allows only 0 more" in message
