"""The API models read the seed design's manifests with the exact Kthena field names."""

from typing import Any

import pytest
from pydantic import ValidationError

from autoscaler.api import (
    AutoscalingPolicy,
    AutoscalingPolicyBehavior,
    AutoscalingPolicyBinding,
    effective_behavior,
)
from caldera.k8s.pod import PodSpec
from modelserving.api import ModelServing
from router.api import ModelRoute, ModelServer


def test_seed_modelserving_reads_topology_policies_and_roles(example: Any) -> None:
    ms = ModelServing.model_validate(example("modelserving-network-topology.yaml"))
    topology = ms.spec.template.network_topology
    assert topology is not None and topology.group_policy is not None and topology.role_policy is not None
    assert (topology.group_policy.mode, topology.group_policy.highest_tier_allowed) == ("hard", 2)
    assert (topology.role_policy.mode, topology.role_policy.highest_tier_allowed) == ("hard", 1)
    roles = {role.name: (role.replicas, role.worker_replicas) for role in ms.spec.template.roles}
    assert roles == {"prefill": (2, 1), "decode": (1, 1)}


def test_modelserving_defaults_are_kthenas(example: Any) -> None:
    ms = ModelServing.model_validate(example("modelserving-network-topology.yaml"))
    assert ms.spec.recovery_policy == "RoleRecreate"
    assert ms.spec.scheduler_name == "volcano"
    assert ms.spec.template.restart_grace_period_seconds == 0
    assert ms.spec.template.roles[0].max_unavailable == 1


def test_gpu_requests_are_quantities_others_can_sum(example: Any) -> None:
    ms = ModelServing.model_validate(example("modelserving-network-topology.yaml"))
    resources = ms.spec.template.roles[0].entry_template.spec.containers[0].resources
    assert resources is not None and resources.limits is not None
    assert resources.limits["nvidia.com/gpu"] == "4"


def test_modelserving_round_trips_through_camel_case(example: Any) -> None:
    manifest = example("modelserving-network-topology.yaml")
    dumped = ModelServing.model_validate(manifest).to_dict()
    assert ModelServing.model_validate(dumped).to_dict() == dumped
    assert dumped["spec"]["template"]["roles"][0]["workerReplicas"] == 1


def test_models_accept_snake_case_names_in_python() -> None:
    spec = PodSpec(containers=[], node_selector={"a": "b"})
    assert spec.to_dict() == {"containers": [], "nodeSelector": {"a": "b"}}


def test_a_typo_inside_a_pod_template_is_an_unknown_field() -> None:
    with pytest.raises(ValidationError, match=r"containers\.0\.imagee"):
        PodSpec.model_validate({"containers": [{"name": "engine", "imagee": "x"}]})


def test_seed_policy_reads_the_v04_metric_name_and_behavior(example: Any) -> None:
    policy = AutoscalingPolicy.model_validate(example("autoscalingpolicy-homogeneous.yaml"))
    spec = policy.spec
    assert spec.metrics is not None
    assert (spec.metrics[0].key, spec.metrics[0].target) == ("kthena:num_requests_waiting", 10)
    assert spec.tolerance_percent == 10
    behavior = spec.behavior
    assert behavior is not None and behavior.scale_up is not None and behavior.scale_down is not None
    panic, stable = behavior.scale_up.panic_policy, behavior.scale_up.stable_policy
    assert panic is not None and stable is not None
    assert (panic.panic_threshold_percent, panic.panic_mode_hold) == (150, "5m")
    assert (stable.stabilization_window, stable.period) == ("1m", "30s")
    assert (behavior.scale_down.stabilization_window, behavior.scale_down.period) == ("5m", "1m")


def test_seed_homogeneous_binding_bounds(example: Any) -> None:
    binding = AutoscalingPolicyBinding.model_validate(example("autoscalingpolicybinding-homogeneous.yaml"))
    target = binding.spec.homogeneous_target
    assert target is not None
    assert (target.min_replicas, target.max_replicas) == (2, 10)
    assert binding.spec.policy_ref.name == "scaling-policy"


def test_seed_heterogeneous_binding_costs_and_bounds(example: Any) -> None:
    binding = AutoscalingPolicyBinding.model_validate(example("autoscalingpolicybinding-heterogeneous.yaml"))
    target = binding.spec.heterogeneous_target
    assert target is not None
    assert target.cost_expansion_rate_percent == 20
    params = [(p.target.target_ref.name, p.cost, p.min_replicas, p.max_replicas) for p in target.params]
    assert params == [("gpu-serving-instance", 100, 1, 5), ("cpu-serving-instance", 30, 2, 8)]


def test_seed_role_binding_targets_one_role(example: Any) -> None:
    binding = AutoscalingPolicyBinding.model_validate(example("autoscalingpolicybinding-role.yaml"))
    target = binding.spec.homogeneous_target
    assert target is not None and target.target.sub_targets is not None
    assert (target.target.sub_targets.kind, target.target.sub_targets.name) == ("Role", "prefill")
    assert (target.min_replicas, target.max_replicas) == (1, 5)


def test_v1_policy_carries_its_own_target(example: Any) -> None:
    policy = AutoscalingPolicy.model_validate(example("autoscalingpolicy-v1-disaggregated.yaml"))
    assert policy.spec.targets() == ["disaggregatedTarget"]
    target = policy.spec.disaggregated_target
    assert target is not None and target.ratio_constraint is not None
    assert set(target.roles) == {"prefill", "decode"}


def test_heterogeneous_cost_expansion_defaults_to_200() -> None:
    binding = AutoscalingPolicyBinding.model_validate(
        {
            "spec": {
                "policyRef": {"name": "p"},
                "heterogeneousTarget": {
                    "params": [{"target": {"targetRef": {"name": "a"}}, "minReplicas": 0, "maxReplicas": 1}]
                },
            }
        }
    )
    assert binding.spec.heterogeneous_target is not None
    assert binding.spec.heterogeneous_target.cost_expansion_rate_percent == 200


def test_effective_behavior_fills_absent_parts_with_the_mutator_table() -> None:
    behavior = effective_behavior(None)
    assert behavior.scale_down is not None and behavior.scale_up is not None
    assert behavior.scale_up.stable_policy is not None and behavior.scale_up.panic_policy is not None
    down, stable, panic = behavior.scale_down, behavior.scale_up.stable_policy, behavior.scale_up.panic_policy
    assert (down.instances, down.percent, down.period, down.select_policy, down.stabilization_window) == (
        0, 100, "1m", "Or", "5m",
    )
    assert (stable.instances, stable.percent, stable.period, stable.stabilization_window) == (4, 100, "1m", "0s")
    assert (panic.percent, panic.period, panic.panic_threshold_percent, panic.panic_mode_hold) == (0, "0s", 200, "0s")


def test_effective_behavior_keeps_what_is_set_and_fills_the_window() -> None:
    given = AutoscalingPolicyBehavior.model_validate({"scaleDown": {"period": "2m"}})
    behavior = effective_behavior(given)
    assert behavior.scale_down is not None
    assert (behavior.scale_down.period, behavior.scale_down.instances) == ("2m", 1)
    assert behavior.scale_down.stabilization_window == "5m"


def test_modelroute_weights_and_header_match(example: Any) -> None:
    route = ModelRoute.model_validate(example("modelroute-canary.yaml"))
    premium, canary = route.spec.rules
    assert premium.model_match is not None and premium.model_match.headers is not None
    assert premium.model_match.headers["user-type"].exact == "premium"
    assert premium.target_models[0].weight == 100
    assert [(t.model_server_name, t.weight) for t in canary.target_models] == [("sample", 70), ("sample-v2", 30)]


def test_modelserver_pd_group_and_traffic_policy(example: Any) -> None:
    server = ModelServer.model_validate(example("modelserver-pd.yaml"))
    assert server.spec.inference_engine == "vLLM"
    assert server.spec.workload_selector.pd_group is not None
    assert server.spec.workload_selector.pd_group.group_key == "modelserving.volcano.sh/group-name"
    assert server.spec.kv_connector is not None and server.spec.kv_connector.type == "nixl"
    assert server.spec.traffic_policy is not None and server.spec.traffic_policy.retry is not None
    assert server.spec.traffic_policy.retry.retry_interval == "100ms"
