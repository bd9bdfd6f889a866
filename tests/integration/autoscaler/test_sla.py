"""SLA mode: prefill and decode counts planned from the engines' own counters and profiles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from caldera.localcluster import wait

pytestmark = pytest.mark.cluster

# A deliberately small profile: 300 prompt tokens/s per prefill GPU, 100 generated tokens/s
# per decode GPU, so a handful of clients needs several replicas of each role.
SLA = {
    "ttftMs": 2000, "itlMs": 200, "predictor": "constant", "intervalSeconds": 60,
    "profile": {"prefill": {"isl": [1, 10000], "ttftMs": [10, 1000], "thptPerGpu": [300, 300]},
                "decode": {"kvUsage": [0.0, 1.0], "context": [1, 100000], "itlMs": [[40, 40], [40, 40]],
                           "thptPerGpu": [[100, 100], [100, 100]], "maxKvTokens": 1000000}},
}


def role(name: str) -> dict[str, Any]:
    return {"name": name, "replicas": 1, "workerReplicas": 0, "entryTemplate": {
        "metadata": {"annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}},
        "spec": {"containers": [{
            "name": "engine", "image": "caldera/enginesim:latest",
            "args": ["--model", "sim", "--served-model-name", "sim", "--max-num-seqs", "64",
                     "--inter-token-latency", "20"],
            "ports": [{"name": "http", "containerPort": 8000}],
            "resources": {"limits": {"nvidia.com/gpu": "1"},
                          "requests": {"cpu": "100m", "memory": "128Mi", "nvidia.com/gpu": "1"}}}]}}}


def test_sla_mode_plans_both_roles_from_engine_counters(as_env: Any) -> None:
    env = as_env
    env.create("modelservings", env.modelserving("pd", [role("prefill"), role("decode")]))
    [prefill] = env.serving("pd", 1, role="prefill")
    [decode] = env.serving("pd", 1, role="decode")
    env.create("autoscalingpolicies", {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "AutoscalingPolicy",
        "metadata": {"name": "sla", "annotations": {"autoscaling.caldera.dev/sla": json.dumps(SLA)}},
        "spec": {"metrics": [{"name": "unused", "targetValue": "1"}],
                 "disaggregatedTarget": {"targetRef": {"kind": "ModelServing", "name": "pd"}, "roles": {
                     "prefill": {"minReplicas": 1, "maxReplicas": 6},
                     "decode": {"minReplicas": 1, "maxReplicas": 6}}}}})
    # The same requests reach both roles, as a P/D router would send them.
    first = env.Load([prefill], concurrency=4, prompt_words=400, max_tokens=1).start()
    second = env.Load([decode], concurrency=4, prompt_words=4, max_tokens=100).start()
    try:
        wait.until(lambda: env.role_replicas("pd", "prefill") > 1 and env.role_replicas("pd", "decode") > 1,
                   120, "both roles scaled by the SLA planner")
    finally:
        first.stop()
        second.stop()
    status = env.get("autoscalingpolicies", "sla")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "sla: predicted" in ready["message"]
