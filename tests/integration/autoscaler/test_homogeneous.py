"""Homogeneous KPA scaling of a ModelServing from real Prometheus scraping real enginesim pods."""

from __future__ import annotations

import time
from typing import Any

import pytest

from caldera.localcluster import wait

pytestmark = pytest.mark.cluster

WINDOWS = {"autoscaling.caldera.dev/stable-window": "20s", "autoscaling.caldera.dev/panic-window": "4s"}
SCALE_DOWN_WINDOW_S = 20


def policy(namespace: str, target: str, prometheus_url: str) -> dict[str, Any]:
    query = (f'sum(vllm:num_requests_running{{namespace="{namespace}"}}) '
             f'+ sum(vllm:num_requests_waiting{{namespace="{namespace}"}})')
    return {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "AutoscalingPolicy",
        "metadata": {"name": "kpa", "annotations": WINDOWS},
        "spec": {
            "metrics": [{"name": "in_flight", "targetValue": "2"}],
            "tolerancePercent": 10,
            "behavior": {
                "scaleUp": {"stablePolicy": {"instances": 1, "percent": 0, "period": "2s", "stabilizationWindow": "0s"},
                            "panicPolicy": {"percent": 1000, "period": "2s", "panicThresholdPercent": 200,
                                            "panicModeHold": "10s"}},
                "scaleDown": {"instances": 0, "percent": 100, "period": "2s",
                              "stabilizationWindow": f"{SCALE_DOWN_WINDOW_S}s"},
            },
            "homogeneousTarget": {
                "target": {"targetRef": {"kind": "ModelServing", "name": target},
                           "metricSources": {"in_flight": {"prometheus": {"serverURL": prometheus_url,
                                                                          "query": query}}}},
                "minReplicas": 1, "maxReplicas": 6,
            },
        },
    }


def scale_events(env: Any, owner: str) -> list[str]:
    return [e["message"] for e in env.events(owner) if e["reason"] in ("ScaledUp", "ScaledDown")]


def first_decision(env: Any) -> Any:
    return (env.get("autoscalingpolicies", "kpa").get("status") or {}).get("homogeneousStatus")


def test_five_times_load_reaches_the_needed_replicas_in_one_panic_step(as_env: Any) -> None:
    env = as_env
    env.create("modelservings", env.modelserving("llm", [env.engine_role("engine")]))
    [url] = env.serving("llm", 1)
    env.create("autoscalingpolicies", policy(env.namespace, "llm", env.cluster.prometheus_url))
    low = env.Load([url], concurrency=2).start()
    try:
        wait.until(lambda: first_decision(env), 60, "the policy's first decision")
        assert env.replicas("llm") == 1
    finally:
        low.stop()
    high = env.Load([url], concurrency=10).start()
    try:
        wait.until(lambda: env.replicas("llm") >= 5, 90, "scale-up to 5 replicas")
    finally:
        high.stop()
    # Panic: the needed count in one decision, not the stable policy's one replica per period.
    # (kopf posts Events from a queue, so the Event may trail the patch a little.)
    assert wait.until(lambda: any("1 -> 5 (Panic)" in m for m in scale_events(env, "kpa")), 30, "the Event")


def test_scale_down_only_after_the_stabilization_window(as_env: Any) -> None:
    env = as_env
    env.create("modelservings", env.modelserving("llm", [env.engine_role("engine")]))
    [url] = env.serving("llm", 1)
    env.create("autoscalingpolicies", policy(env.namespace, "llm", env.cluster.prometheus_url))
    high = env.Load([url], concurrency=8).start()
    try:
        wait.until(lambda: env.replicas("llm") >= 4, 90, "scale-up to 4 replicas")
    finally:
        high.stop()
    removed = time.monotonic()
    wait.until(lambda: env.replicas("llm") == 1, 180, "scale-down to 1 replica")
    # The behaviour under test is the hold itself: no scale-down before the window has passed.
    assert time.monotonic() - removed >= SCALE_DOWN_WINDOW_S
    assert wait.until(lambda: any("-> 1 (Stable)" in m for m in scale_events(env, "kpa")), 30, "the Event")
