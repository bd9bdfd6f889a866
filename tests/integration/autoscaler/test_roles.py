"""Prefill and decode roles of one ModelServing scale separately, each from its own pods' metrics."""

from __future__ import annotations

from typing import Any

import pytest

from caldera.localcluster import wait

pytestmark = pytest.mark.cluster


def role(name: str, extra_args: list[str]) -> dict[str, Any]:
    return {
        "name": name, "replicas": 1, "workerReplicas": 0, "entryTemplate": {
            "metadata": {"annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}},
            "spec": {"containers": [{
                "name": "engine", "image": "caldera/enginesim:latest",
                "args": ["--model", "sim", "--served-model-name", "sim", "--max-num-seqs", "64",
                         "--inter-token-latency", "40", *extra_args],
                "ports": [{"name": "http", "containerPort": 8000}],
                "resources": {"limits": {"nvidia.com/gpu": "1"},
                              "requests": {"cpu": "100m", "memory": "128Mi", "nvidia.com/gpu": "1"}}}]}}}


def policy(target: str) -> dict[str, Any]:
    source = {"pod": {"name": "vllm:num_requests_running", "port": 8000}}
    roles = {r: {"minReplicas": 1, "maxReplicas": 4, "metricSources": {"in_flight": source}}
             for r in ("prefill", "decode")}
    return {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "AutoscalingPolicy",
        "metadata": {"name": "pd", "annotations": {"autoscaling.caldera.dev/stable-window": "20s",
                                                   "autoscaling.caldera.dev/panic-window": "4s"}},
        "spec": {
            "metrics": [{"name": "in_flight", "targetValue": "2"}],
            "behavior": {"scaleDown": {"instances": 0, "percent": 100, "period": "2s", "stabilizationWindow": "10s"}},
            "disaggregatedTarget": {
                "targetRef": {"kind": "ModelServing", "name": target}, "roles": roles,
                "ratioConstraint": {"numeratorRole": "prefill", "denominatorRole": "decode",
                                    "minRatio": "250m", "maxRatio": "4"},
            },
        },
    }


def test_prefill_and_decode_scale_separately(as_env: Any) -> None:
    env = as_env
    env.create("modelservings", env.modelserving("pd", [
        role("prefill", ["--time-per-prefill-token", "2"]), role("decode", [])]))
    [prefill] = env.serving("pd", 1, role="prefill")
    [decode] = env.serving("pd", 1, role="decode")
    env.create("autoscalingpolicies", policy("pd"))
    # Prefill-heavy: long prompts, one output token, to the prefill engine only.
    heavy = env.Load([prefill], concurrency=8, prompt_words=2000, max_tokens=1).start()
    try:
        wait.until(lambda: env.role_replicas("pd", "prefill") == 4, 120, "prefill scaled to 4")
        assert env.role_replicas("pd", "decode") == 1
    finally:
        heavy.stop()
    # Decode-heavy: short prompts, long outputs, to the decode engine only.
    heavy = env.Load([decode], concurrency=8, prompt_words=4, max_tokens=200).start()
    try:
        wait.until(lambda: env.role_replicas("pd", "decode") == 4, 120, "decode scaled to 4")
        wait.until(lambda: env.role_replicas("pd", "prefill") == 1, 120, "prefill back to 1")
    finally:
        heavy.stop()
