"""Caldera's admission webhooks end to end: kube-apiserver calls `caldera controller` over TLS.

Each rejection uses a rule the CRD schema and its CEL rules do not enforce, so the message
checked can only have come from the validating webhook; the exception is the gangPolicy
transition rule, which the CRD also holds (and checks first: the API server runs a custom
resource's schema and CEL validation before the validating webhooks).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.api import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP_PANIC, DEFAULT_SCALE_UP_STABLE
from caldera.localcluster import wait
from webhooks.kinds import BY_KIND, RESOURCES

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
WORKLOAD = "workload.serving.volcano.sh/v1alpha1"
NETWORKING = "networking.serving.volcano.sh/v1alpha1"


def pod_template() -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "engine", "image": "registry.local/engine:v1"}]}}


def model_serving(name: str = "ms", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": WORKLOAD, "kind": "ModelServing", "metadata": {"name": name},
        "spec": {"replicas": 1, "template": {"roles": [
            {"name": "decode", "replicas": 2, "workerReplicas": 0, "entryTemplate": pod_template()}]}},
    }
    body["spec"].update(spec)
    return body


def policy(name: str = "policy", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": WORKLOAD, "kind": "AutoscalingPolicy", "metadata": {"name": name},
            "spec": {"metrics": [{"metricName": "kthena:num_requests_waiting", "targetValue": 10}], **spec}}


def binding(min_replicas: int, max_replicas: int) -> dict[str, Any]:
    return {"apiVersion": WORKLOAD, "kind": "AutoscalingPolicyBinding", "metadata": {"name": "binding"},
            "spec": {"policyRef": {"name": "policy"}, "homogeneousTarget": {
                "target": {"targetRef": {"kind": "ModelServing", "name": "ms"}},
                "minReplicas": min_replicas, "maxReplicas": max_replicas}}}


def route(*weights: int) -> dict[str, Any]:
    return {"apiVersion": NETWORKING, "kind": "ModelRoute", "metadata": {"name": "route"},
            "spec": {"modelName": "qwen", "rules": [{"name": "split", "targetModels": [
                {"modelServerName": f"server-{i}", "weight": weight} for i, weight in enumerate(weights)]}]}}


def with_gang_policy(ms: dict[str, Any], minimum: int) -> dict[str, Any]:
    ms["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"decode": minimum}}
    return ms


# -- registration ----------------------------------------------------------------------------------
def test_configurations_name_every_caldera_kind_with_the_controllers_ca(admission: Any, webhook_controller: Any) -> None:
    validating, mutating = admission.webhooks()
    ca = (webhook_controller.tls_dir / "ca.crt").read_bytes()
    expected = {(r.group, r.plural) for r in RESOURCES}
    for hooks in (validating, mutating):
        assert {(rule.api_groups[0], rule.resources[0]) for hook in hooks for rule in hook.rules} == expected
        assert all(base64.b64decode(hook.client_config.ca_bundle) == ca for hook in hooks)
        assert all(hook.client_config.url.startswith(webhook_controller.url_prefix) for hook in hooks)


def test_configurations_fail_closed_on_create_and_update(admission: Any) -> None:
    validating, mutating = admission.webhooks()
    assert {hook.failure_policy for hook in [*validating, *mutating]} == {"Fail"}
    assert {tuple(rule.operations) for hook in [*validating, *mutating] for rule in hook.rules} == {("CREATE", "UPDATE")}


# -- validation ------------------------------------------------------------------------------------
MODEL_SERVING_REJECTIONS = {
    "role-partition-without-role-rolling-update": (
        lambda: _role_partition(), "spec.template.roles[0].partition",
        "partition is only valid when rolloutStrategy.type is RoleRollingUpdate"),
    "serving-group-recreate-with-role-rolling-update": (
        lambda: model_serving(recoveryPolicy="ServingGroupRecreate", rolloutStrategy={"type": "RoleRollingUpdate"}),
        "spec.rolloutStrategy.type", "ServingGroupRecreate cannot be combined with RoleRollingUpdate"),
    "generated-pod-name-not-dns-1035": (
        lambda: model_serving(name="m" * 60), "metadata.name", "shorten the ModelServing or role name"),
    "max-unavailable-resolving-to-zero": (
        lambda: model_serving(replicas=3, rolloutStrategy={"type": "ServingGroupRollingUpdate",
                                                           "rollingUpdateConfiguration": {"maxUnavailable": "10%"}}),
        "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable", "resolves to 0 for 3 replicas"),
}


def _role_partition() -> dict[str, Any]:
    ms = model_serving()
    ms["spec"]["template"]["roles"][0]["partition"] = 1
    return ms


@pytest.mark.parametrize("case", list(MODEL_SERVING_REJECTIONS), ids=list(MODEL_SERVING_REJECTIONS))
def test_invalid_model_serving_is_rejected_with_field_path_and_reason(admission: Any, case: str) -> None:
    make, path, reason = MODEL_SERVING_REJECTIONS[case]
    message = admission.rejection(lambda: admission.create(make()))
    assert f"{path}: " in message and reason in message


def test_binding_with_min_above_max_replicas_is_rejected(admission: Any) -> None:
    message = admission.rejection(lambda: admission.create(binding(5, 2)))
    assert "spec.homogeneousTarget.minReplicas: minReplicas (5) must be <= maxReplicas (2)" in message


def test_policy_with_behavior_window_over_30_minutes_is_rejected(admission: Any) -> None:
    manifest = policy(behavior={"scaleDown": {"stabilizationWindow": "31m"}})
    message = admission.rejection(lambda: admission.create(manifest))
    assert "spec.behavior.scaleDown.stabilizationWindow: " in message and "between 0 and 30 minutes" in message


def test_model_route_with_zero_total_weight_is_rejected(admission: Any) -> None:
    message = admission.rejection(lambda: admission.create(route(0, 0)))
    assert "spec.rules[0].targetModels: total weight must be greater than zero" in message


def test_model_server_selecting_by_an_invalid_label_key_is_rejected(admission: Any) -> None:
    server = {"apiVersion": NETWORKING, "kind": "ModelServer", "metadata": {"name": "server"},
              "spec": {"model": "qwen", "inferenceEngine": "vLLM", "workloadPort": {"port": 8000},
                       "workloadSelector": {"matchLabels": {"bad key": "x"}}}}
    message = admission.rejection(lambda: admission.create(server))
    assert "spec.workloadSelector.matchLabels[bad key]: label key name 'bad key' must be" in message


def test_server_side_dry_run_is_validated_by_the_webhook(admission: Any) -> None:
    manifest = model_serving(recoveryPolicy="ServingGroupRecreate", rolloutStrategy={"type": "RoleRollingUpdate"})
    manifest["metadata"]["namespace"] = admission.namespace
    message = admission.rejection(lambda: admission.custom.create_namespaced_custom_object(
        "workload.serving.volcano.sh", "v1alpha1", admission.namespace, "modelservings", manifest, dry_run="All"))
    assert "spec.rolloutStrategy.type: " in message


def test_update_breaking_a_webhook_rule_is_rejected(admission: Any) -> None:
    admission.create(model_serving())
    patch = {"spec": {"recoveryPolicy": "ServingGroupRecreate", "rolloutStrategy": {"type": "RoleRollingUpdate"}}}
    message = admission.rejection(lambda: admission.patch("ModelServing", "ms", patch))
    assert "spec.rolloutStrategy.type: " in message and "ServingGroupRecreate cannot be combined" in message


def test_update_of_a_reconciled_model_serving_is_admitted(admission: Any) -> None:
    """Updates carry the status the controller wrote; the webhook must accept its own controller's status."""
    admission.create(model_serving())
    wait.until(lambda: (admission.get("ModelServing", "ms").get("status") or {}).get("observedGeneration"), 60,
               "the controller's status", 0.2)
    updated = admission.patch("ModelServing", "ms", {"spec": {"replicas": 2}})
    assert updated["spec"]["replicas"] == 2


def test_update_of_a_binding_with_the_autoscalers_status_is_admitted(admission: Any) -> None:
    admission.create(policy())
    admission.create(binding(1, 3))
    wait.until(lambda: (admission.get("AutoscalingPolicyBinding", "binding").get("status") or {}).get("conditions"),
               60, "the autoscaler's status", 0.2)
    updated = admission.patch("AutoscalingPolicyBinding", "binding", {"spec": {"homogeneousTarget": {"maxReplicas": 4}}})
    assert updated["spec"]["homogeneousTarget"]["maxReplicas"] == 4


def test_update_removing_gang_policy_is_rejected(admission: Any) -> None:
    admission.create(with_gang_policy(model_serving(), 1))
    # A merge patch with null removes the field, without racing the controller's own writes.
    patch = {"spec": {"template": {"gangPolicy": None}}}
    message = admission.rejection(lambda: admission.patch("ModelServing", "ms", patch))
    # The CRD's transition rule answers first; the webhook holds the same rule for old API servers.
    assert "gangPolicy is required once set" in message


# -- defaulting ------------------------------------------------------------------------------------
def test_policy_without_behavior_gets_kthenas_defaults_stored(admission: Any) -> None:
    admission.create(policy(behavior={}))
    behavior = admission.get("AutoscalingPolicy", "policy")["spec"]["behavior"]

    def dump(model: Any) -> dict[str, Any]:
        return dict(model.model_dump(by_alias=True, exclude_none=True, mode="json"))

    assert behavior == {"scaleDown": dump(DEFAULT_SCALE_DOWN),
                        "scaleUp": {"stablePolicy": dump(DEFAULT_SCALE_UP_STABLE),
                                    "panicPolicy": dump(DEFAULT_SCALE_UP_PANIC)}}


def test_empty_scale_down_gets_the_five_minute_stabilization_window(admission: Any) -> None:
    admission.create(policy(behavior={"scaleDown": {}}))
    scale_down = admission.get("AutoscalingPolicy", "policy")["spec"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindow"] == "5m"


def test_defaulting_keeps_the_fields_given(admission: Any) -> None:
    admission.create(policy(behavior={"scaleDown": {"period": "2m", "instances": 3}}))
    scale_down = admission.get("AutoscalingPolicy", "policy")["spec"]["behavior"]["scaleDown"]
    assert (scale_down["period"], scale_down["instances"]) == ("2m", 3)


# -- admission of valid manifests ------------------------------------------------------------------
def _examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.yaml")
                  if any(doc and doc.get("apiVersion") in (WORKLOAD, NETWORKING) for doc in yaml.safe_load_all(p.read_text())))


@pytest.mark.parametrize("example", _examples(), ids=lambda p: p.stem)
def test_example_is_admitted(admission: Any, example: Path) -> None:
    for doc in yaml.safe_load_all(example.read_text()):
        if doc and doc.get("kind") in BY_KIND:
            created = admission.create(doc)
            assert created["metadata"]["name"] == doc["metadata"]["name"]
