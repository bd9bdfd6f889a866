"""The mutating webhook adds Kthena's defaults where fields are absent and changes nothing present."""

import copy
from pathlib import Path
from typing import Any

import yaml

from webhooks.defaulting import apply_defaults, defaults_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return document


def _policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1",
        "kind": "AutoscalingPolicy",
        "metadata": {"name": "p"},
        "spec": spec,
    }


def test_absent_behavior_gets_the_mutator_table() -> None:
    policy = apply_defaults(_policy({"metrics": [{"name": "a", "targetValue": 1}]}))
    behavior = policy["spec"]["behavior"]
    assert behavior["scaleDown"] == {
        "instances": 0, "percent": 100, "period": "1m", "selectPolicy": "Or", "stabilizationWindow": "5m",
    }
    assert behavior["scaleUp"]["stablePolicy"] == {
        "instances": 4, "percent": 100, "period": "1m", "selectPolicy": "Or", "stabilizationWindow": "0s",
    }
    assert behavior["scaleUp"]["panicPolicy"] == {
        "percent": 0, "period": "0s", "panicThresholdPercent": 200, "panicModeHold": "0s",
    }


def test_a_present_scale_down_keeps_its_values_and_gets_a_window() -> None:
    policy = apply_defaults(_policy({"metrics": [{"name": "a", "targetValue": 1}], "behavior": {"scaleDown": {"period": "2m"}}}))
    assert policy["spec"]["behavior"]["scaleDown"]["period"] == "2m"
    assert policy["spec"]["behavior"]["scaleDown"]["stabilizationWindow"] == "5m"


def test_seed_policy_keeps_every_value_it_sets() -> None:
    original = _load("autoscalingpolicy-homogeneous.yaml")
    defaulted = apply_defaults(copy.deepcopy(original))
    panic = defaulted["spec"]["behavior"]["scaleUp"]["panicPolicy"]
    assert (panic["panicThresholdPercent"], panic["panicModeHold"]) == (150, "5m")
    assert defaulted["spec"]["metrics"] == original["spec"]["metrics"]


def test_modelserving_gets_crd_defaults() -> None:
    added = {d.path: d.value for d in defaults_for(_load("modelserving-network-topology.yaml"))}
    assert added["spec.recoveryPolicy"] == "RoleRecreate"
    assert added["spec.template.roles[0].maxUnavailable"] == 1
    assert "spec.replicas" not in added


def test_invalid_objects_get_no_defaults() -> None:
    assert defaults_for(_policy({"tolerancePercent": "ten"})) == []


def test_defaulting_is_idempotent() -> None:
    once = apply_defaults(_load("modelroute-canary.yaml"))
    assert defaults_for(once) == []
