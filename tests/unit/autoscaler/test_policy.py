"""From Kthena objects to algorithm configuration, and free GPUs from Nodes and Pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler import policy as P
from autoscaler.api import AutoscalingPolicy
from autoscaler.placeable import free_gpus_by_type, gpu_type_of, gpus_per_pod

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def load(name: str) -> AutoscalingPolicy:
    return AutoscalingPolicy.model_validate(yaml.safe_load((EXAMPLES / name).read_text()))


def test_seed_policy_maps_behaviour_to_the_kpa() -> None:
    config = P.kpa_config(load("autoscalingpolicy-homogeneous.yaml").spec, 2, 10, {})
    assert config.panic.threshold_percent == 150
    assert config.panic.hold_s == 300
    assert config.scale_up.stabilization_window_s == 60
    assert config.scale_up.period_s == 30
    assert config.scale_down.stabilization_window_s == 300
    assert (config.min_replicas, config.max_replicas, config.tolerance_percent) == (2, 10, 10)


def test_annotations_set_the_knative_windows_and_scale_to_zero() -> None:
    anns = {P.PREFIX + "stable-window": "20s", P.PREFIX + "panic-window": "4s", P.PREFIX + "scale-to-zero": "true"}
    config = P.kpa_config(load("autoscalingpolicy-homogeneous.yaml").spec, 0, 10, anns)
    assert (config.stable_window_s, config.panic_window_s, config.floor) == (20, 4, 0)


def test_zero_panic_hold_means_a_full_stable_window() -> None:
    spec = load("autoscalingpolicy-v1-homogeneous.yaml").spec
    spec = spec.model_copy(update={"behavior": None})
    assert P.kpa_config(spec, 1, 5, {}).panic_hold_s == 60


def test_bad_annotation_names_the_key() -> None:
    with pytest.raises(ValueError, match="stable-window"):
        P.kpa_config(load("autoscalingpolicy-homogeneous.yaml").spec, 1, 5, {P.PREFIX + "stable-window": "soon"})


def test_role_metric_sources_name_the_exposed_metric_and_port() -> None:
    target = load("autoscalingpolicy-v1-disaggregated.yaml").spec.disaggregated_target
    assert target is not None
    decode = target.roles["decode"]
    [plan] = P.metric_plans(decode.metrics, None, sources=decode.metric_sources or {})
    assert plan.target == pytest.approx(0.8)
    assert plan.source == P.PodSource(port=8000, path="/metrics", labels={}, metric="vllm:kv_cache_usage_perc")


def test_metric_without_a_source_is_scraped_from_pods_on_8100() -> None:
    spec = load("autoscalingpolicy-homogeneous.yaml").spec
    [plan] = P.metric_plans(spec.metrics, None)
    assert plan.source == P.PodSource()


def test_ratio_bounds_parse_as_quantities() -> None:
    assert P.parse_ratio("500m") == 0.5


def test_unknown_heterogeneous_algorithm_is_rejected() -> None:
    with pytest.raises(ValueError, match="optimizer or kthena"):
        P.heterogeneous_options({P.PREFIX + "heterogeneous-algorithm": "best"})


def node(name: str, gpus: int, gpu_type: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": gpu_type}},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "64"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(node_name: str, gpus: int, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": f"p-{node_name}-{gpus}-{phase}", "namespace": "default"},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {
                "requests": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": phase}}


def test_free_gpus_are_grouped_by_type_and_subtract_running_pods() -> None:
    nodes = [node("a", 8, "H100"), node("b", 8, "H100"), node("c", 8, "A100")]
    pods = [pod("a", 6), pod("c", 8), pod("b", 8, phase="Succeeded")]
    assert free_gpus_by_type(nodes, pods) == {"H100": [2, 8], "A100": [0]}


def test_gpu_type_and_size_of_a_modelserving() -> None:
    ms = {"spec": {"template": {"roles": [{
        "name": "r", "replicas": 1, "workerReplicas": 1,
        "entryTemplate": {"spec": {"nodeSelector": {"nvidia.com/gpu.product": "H100"}, "containers": [
            {"name": "e", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}},
        "workerTemplate": {"spec": {"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}},
    }]}}}
    assert gpu_type_of(ms) == "H100"
    assert gpus_per_pod(ms) == (4, 2)
