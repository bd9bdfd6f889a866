"""Malformed manifests are rejected with the field path and the reason (the webhook's rules)."""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhooks.validation import validate_object, validate_transition

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
Doc = dict[str, Any]


def _load(name: str) -> Doc:
    document: Doc = yaml.safe_load((EXAMPLES / name).read_text())
    return document


MS = "modelserving-network-topology.yaml"
POLICY = "autoscalingpolicy-homogeneous.yaml"
V1_PD = "autoscalingpolicy-v1-disaggregated.yaml"
V1_HOMO = "autoscalingpolicy-v1-homogeneous.yaml"
BINDING = "autoscalingpolicybinding-homogeneous.yaml"
HETERO = "autoscalingpolicybinding-heterogeneous.yaml"
ROLE_BINDING = "autoscalingpolicybinding-role.yaml"
ROUTE = "modelroute-canary.yaml"
SERVER = "modelserver-pd.yaml"


def _role(doc: Doc, i: int) -> Doc:
    role: Doc = doc["spec"]["template"]["roles"][i]
    return role


def _container(doc: Doc, i: int = 0) -> Doc:
    container: Doc = _role(doc, i)["entryTemplate"]["spec"]["containers"][0]
    return container


def _set(**fields: Any) -> Callable[[Doc], object]:
    """Set dotted paths: _set(**{"spec.replicas": 3})."""

    def mutate(doc: Doc) -> None:
        for dotted, value in fields.items():
            node = doc
            *parents, last = dotted.split(".")
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            node[last] = value

    return mutate


def _rolling(doc: Doc) -> Doc:
    doc["spec"]["rolloutStrategy"] = {"type": "RoleRollingUpdate"}
    return doc


CASES: list[tuple[str, str, Callable[[Doc], object], str, str]] = [
    # ModelServing: structure
    ("ms-unknown-spec-field", MS, _set(**{"spec.bogus": 1}), "spec.bogus", "unknown field"),
    ("ms-unknown-pod-field", MS, lambda d: _container(d).update(imagee="x"),
     "spec.template.roles[0].entryTemplate.spec.containers[0].imagee", "unknown field"),
    ("ms-unknown-worker-pod-field", MS, lambda d: _role(d, 1)["workerTemplate"]["spec"].update(nodeSelectr={}),
     "spec.template.roles[1].workerTemplate.spec.nodeSelectr", "unknown field"),
    ("ms-replicas-string", MS, _set(**{"spec.replicas": "2"}), "spec.replicas", "valid integer (got string)"),
    ("ms-container-port-string", MS, lambda d: _container(d)["ports"][0].update(containerPort="8000"),
     "spec.template.roles[0].entryTemplate.spec.containers[0].ports[0].containerPort", "valid integer"),
    ("ms-bad-quantity", MS, lambda d: _container(d)["resources"]["limits"].update({"nvidia.com/gpu": "four"}),
     "spec.template.roles[0].entryTemplate.spec.containers[0].resources.limits[nvidia.com/gpu]", "not a quantity"),
    ("ms-role-name-13-chars", MS, lambda d: _role(d, 0).update(name="prefill-stage"),
     "spec.template.roles[0].name", "at most 12 characters"),
    ("ms-role-name-uppercase", MS, lambda d: _role(d, 0).update(name="Prefill"),
     "spec.template.roles[0].name", "DNS-1035"),
    ("ms-role-name-leading-digit", MS, lambda d: _role(d, 1).update(name="1decode"),
     "spec.template.roles[1].name", "DNS-1035"),
    ("ms-role-missing-entry-template", MS, lambda d: _role(d, 0).pop("entryTemplate"),
     "spec.template.roles[0].entryTemplate", "required value"),
    ("ms-workers-without-template", MS, lambda d: _role(d, 0).pop("workerTemplate"),
     "spec.template.roles[0].workerTemplate", "workerTemplate is required when workerReplicas is greater than 0"),
    ("ms-negative-workers", MS, lambda d: _role(d, 0).update(workerReplicas=-1),
     "spec.template.roles[0].workerReplicas", "greater than or equal to 0"),
    ("ms-duplicate-role-names", MS, lambda d: _role(d, 1).update(name="prefill"),
     "spec.template", "roles name must be unique"),
    ("ms-five-roles", MS, lambda d: d["spec"]["template"]["roles"].extend(copy.deepcopy(d["spec"]["template"]["roles"][:1]) * 3),
     "spec.template.roles", "at most 4 items"),
    ("ms-no-roles", MS, _set(**{"spec.template.roles": []}), "spec.template.roles", "at least 1 item"),
    ("ms-gang-missing-role", MS, _set(**{"spec.template.gangPolicy": {"minRoleReplicas": {"router": 1}}}),
     "spec.template.gangPolicy.minRoleReplicas[router]", "role router does not exist in template.roles"),
    ("ms-gang-above-replicas", MS, _set(**{"spec.template.gangPolicy": {"minRoleReplicas": {"prefill": 3}}}),
     "spec.template.gangPolicy.minRoleReplicas[prefill]", "cannot exceed replicas (2)"),
    ("ms-gang-negative", MS, _set(**{"spec.template.gangPolicy": {"minRoleReplicas": {"decode": -1}}}),
     "spec.template.gangPolicy.minRoleReplicas[decode]", "must be non-negative"),
    ("ms-tier-zero", MS, _set(**{"spec.template.networkTopology.groupPolicy.highestTierAllowed": 0}),
     "spec.template.networkTopology.groupPolicy.highestTierAllowed", "greater than or equal to 1"),
    ("ms-tier-mode", MS, _set(**{"spec.template.networkTopology.rolePolicy.mode": "strict"}),
     "spec.template.networkTopology.rolePolicy.mode", "'hard' or 'soft'"),
    ("ms-tier-and-tier-name", MS, _set(**{"spec.template.networkTopology.groupPolicy.highestTierName": "s2"}),
     "spec.template.networkTopology.groupPolicy", "cannot be set simultaneously"),
    ("ms-role-tier-above-group", MS, _set(**{"spec.template.networkTopology.rolePolicy.highestTierAllowed": 3}),
     "spec.template.networkTopology.rolePolicy.highestTierAllowed", "cannot span a higher tier"),
    ("ms-partition-without-role-rolling", MS, lambda d: _role(d, 0).update(partition=1),
     "spec.template.roles[0].partition", "only valid when rolloutStrategy.type is RoleRollingUpdate"),
    ("ms-recreate-with-role-rolling", MS,
     lambda d: (_rolling(d), d["spec"].update(recoveryPolicy="ServingGroupRecreate")),
     "spec.rolloutStrategy.type", "ServingGroupRecreate cannot be combined with RoleRollingUpdate"),
    ("ms-max-unavailable-zero", MS,
     _set(**{"spec.rolloutStrategy": {"type": "ServingGroupRollingUpdate", "rollingUpdateConfiguration": {"maxUnavailable": 0}}}),
     "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable", "resolves to 0"),
    ("ms-max-unavailable-percent-rounds-to-zero", MS,
     _set(**{"spec.rolloutStrategy": {"rollingUpdateConfiguration": {"maxUnavailable": "50%"}}}),
     "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable", "resolves to 0 for 1 replicas"),
    ("ms-max-unavailable-over-100-percent", MS,
     _set(**{"spec.rolloutStrategy": {"rollingUpdateConfiguration": {"maxUnavailable": "150%"}}}),
     "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable", "valid percent value (0-100)"),
    ("ms-max-unavailable-not-percent", MS,
     _set(**{"spec.rolloutStrategy": {"rollingUpdateConfiguration": {"maxUnavailable": "one"}}}),
     "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable", "neither an integer nor a percentage"),
    ("ms-rolling-config-with-role-rolling", MS,
     _set(**{"spec.rolloutStrategy": {"type": "RoleRollingUpdate", "rollingUpdateConfiguration": {"maxUnavailable": 1}}}),
     "spec.rolloutStrategy.rollingUpdateConfiguration", "only valid when rolloutStrategy.type is ServingGroupRollingUpdate"),
    ("ms-role-max-unavailable-above-replicas", MS, lambda d: (_rolling(d), _role(d, 1).update(maxUnavailable=2)),
     "spec.template.roles[1].maxUnavailable", "cannot be greater than replicas (1)"),
    ("ms-role-max-unavailable-zero", MS, lambda d: (_rolling(d), _role(d, 0).update(maxUnavailable="10%")),
     "spec.template.roles[0].maxUnavailable", "resolves to 0"),
    ("ms-generated-name-too-long", MS, _set(**{"metadata.name": "m" * 55}), "metadata.name", "generated name"),
    ("ms-bad-recovery-policy", MS, _set(**{"spec.recoveryPolicy": "Restart"}), "spec.recoveryPolicy",
     "'ServingGroupRecreate', 'RoleRecreate' or 'None'"),
    ("ms-image-with-space", MS, lambda d: _container(d).update(image="caldera/enginesim latest"),
     "spec.template.roles[0].entryTemplate.spec.containers[0].image", "invalid container image reference"),
    ("ms-no-containers", MS, lambda d: _role(d, 0)["entryTemplate"]["spec"].update(containers=[]),
     "spec.template.roles[0].entryTemplate.spec.containers", "at least one container"),
    ("ms-plugin-unknown-role", MS, _set(**{"spec.plugins": [{"name": "p", "scope": {"roles": ["router"]}}]}),
     "spec.plugins[0].scope.roles[0]", "does not exist"),
    # AutoscalingPolicy
    ("policy-unknown-field", POLICY, _set(**{"spec.behavior.scaleUp.panicPolicy.threshold": 1}),
     "spec.behavior.scaleUp.panicPolicy.threshold", "unknown field"),
    ("policy-tolerance-over-100", POLICY, _set(**{"spec.tolerancePercent": 101}), "spec.tolerancePercent",
     "less than or equal to 100"),
    ("policy-panic-threshold-below-110", POLICY, _set(**{"spec.behavior.scaleUp.panicPolicy.panicThresholdPercent": 100}),
     "spec.behavior.scaleUp.panicPolicy.panicThresholdPercent", "greater than or equal to 110"),
    ("policy-bad-duration", POLICY, _set(**{"spec.behavior.scaleDown.period": "1 minute"}),
     "spec.behavior.scaleDown.period", "not a duration"),
    ("policy-window-over-30m", POLICY, _set(**{"spec.behavior.scaleDown.stabilizationWindow": "31m"}),
     "spec.behavior.scaleDown.stabilizationWindow", "between 0 and 30 minutes"),
    ("policy-select-policy", POLICY, _set(**{"spec.behavior.scaleDown.selectPolicy": "Max"}),
     "spec.behavior.scaleDown.selectPolicy", "'Or' or 'And'"),
    ("policy-metric-without-name", POLICY, _set(**{"spec.metrics": [{"targetValue": 1}]}), "spec.metrics[0]",
     "exactly one of name or metricName"),
    ("policy-metric-both-names", POLICY, _set(**{"spec.metrics": [{"name": "a", "metricName": "a", "targetValue": 1}]}),
     "spec.metrics[0]", "exactly one of name or metricName"),
    ("policy-target-zero", POLICY, _set(**{"spec.metrics": [{"metricName": "a", "targetValue": 0}]}),
     "spec.metrics[0].targetValue", "greater than 0"),
    ("policy-duplicate-metric", POLICY,
     _set(**{"spec.metrics": [{"name": "a", "targetValue": 1}, {"name": "a", "targetValue": 2}]}),
     "spec.metrics[1].name", "duplicate metric name a"),
    ("policy-no-metrics", POLICY, lambda d: d["spec"].pop("metrics"), "spec.metrics", "at least one metric"),
    ("policy-both-targets", V1_HOMO,
     lambda d: d["spec"].update(heterogeneousTarget={"params": [{"target": {"targetRef": {"name": "a"}}, "minReplicas": 0, "maxReplicas": 1}]}),
     "spec", "at most one of homogeneousTarget, heterogeneousTarget or disaggregatedTarget"),
    ("policy-target-kind", V1_HOMO, _set(**{"spec.homogeneousTarget.target.targetRef.kind": "Deployment"}),
     "spec.homogeneousTarget.target.targetRef.kind", "must be ModelServing"),
    ("policy-min-above-max", V1_HOMO, _set(**{"spec.homogeneousTarget.minReplicas": 5}),
     "spec.homogeneousTarget.minReplicas", "must be <= maxReplicas (4)"),
    ("policy-source-both-backends", V1_HOMO,
     _set(**{"spec.homogeneousTarget.target.metricSources.num_requests_waiting.prometheus": {"serverURL": "http://127.0.0.1:9090", "query": "up"}}),
     "spec.homogeneousTarget.target.metricSources[num_requests_waiting]", "mutually exclusive"),
    ("policy-source-unknown-metric", V1_HOMO,
     _set(**{"spec.homogeneousTarget.target.metricSources.other": {"pod": {}}}),
     "spec.homogeneousTarget.target.metricSources[other]", "does not match any metric name"),
    ("policy-ratio-one-role", V1_PD, lambda d: d["spec"]["disaggregatedTarget"]["roles"].pop("decode"),
     "spec.disaggregatedTarget", "at least two entries when ratioConstraint is configured"),
    ("policy-ratio-same-role", V1_PD, _set(**{"spec.disaggregatedTarget.ratioConstraint.denominatorRole": "prefill"}),
     "spec.disaggregatedTarget.ratioConstraint.denominatorRole", "must differ"),
    ("policy-ratio-min-above-max", V1_PD, _set(**{"spec.disaggregatedTarget.ratioConstraint.minRatio": "4"}),
     "spec.disaggregatedTarget.ratioConstraint.minRatio", "minRatio must be <= maxRatio"),
    ("policy-three-roles", V1_PD,
     _set(**{"spec.disaggregatedTarget.roles.router": {"minReplicas": 1, "maxReplicas": 1}}),
     "spec.disaggregatedTarget.roles", "at most 2 items"),
    # AutoscalingPolicyBinding
    ("binding-both-targets", BINDING,
     lambda d: d["spec"].update(heterogeneousTarget=copy.deepcopy(_load(HETERO)["spec"]["heterogeneousTarget"])),
     "spec", "Either heterogeneousTarget or homogeneousTarget must be set, but not both"),
    ("binding-no-target", BINDING, lambda d: d["spec"].pop("homogeneousTarget"), "spec",
     "Either heterogeneousTarget or homogeneousTarget must be set"),
    ("binding-min-above-max", BINDING, _set(**{"spec.homogeneousTarget.minReplicas": 11}),
     "spec.homogeneousTarget.minReplicas", "must be <= maxReplicas (10)"),
    ("binding-max-zero", BINDING, _set(**{"spec.homogeneousTarget.maxReplicas": 0}),
     "spec.homogeneousTarget.maxReplicas", "greater than or equal to 1"),
    ("binding-subtarget-kind", ROLE_BINDING, _set(**{"spec.homogeneousTarget.target.subTargets.kind": "Pod"}),
     "spec.homogeneousTarget.target.subTargets.kind", "must be Role"),
    ("binding-negative-cost", HETERO, lambda d: d["spec"]["heterogeneousTarget"]["params"][0].update(cost=-1),
     "spec.heterogeneousTarget.params[0].cost", "greater than or equal to 0"),
    ("binding-no-policy-name", BINDING, _set(**{"spec.policyRef": {}}), "spec.policyRef.name", "must name"),
    # ModelRoute
    ("route-weight-over-100", ROUTE, lambda d: d["spec"]["rules"][1]["targetModels"][0].update(weight=101),
     "spec.rules[1].targetModels[0].weight", "less than or equal to 100"),
    ("route-weight-negative", ROUTE, lambda d: d["spec"]["rules"][1]["targetModels"][1].update(weight=-1),
     "spec.rules[1].targetModels[1].weight", "greater than or equal to 0"),
    ("route-total-weight-zero", ROUTE,
     lambda d: [t.update(weight=0) for t in d["spec"]["rules"][1]["targetModels"]],
     "spec.rules[1].targetModels", "total weight must be greater than zero"),
    ("route-no-model-or-adapters", ROUTE, lambda d: d["spec"].pop("modelName"), "spec",
     "ModelName and LoraAdapters cannot both be empty"),
    ("route-two-destinations", ROUTE,
     lambda d: d["spec"]["rules"][0]["targetModels"][0].update(externalModelProviderName="openai"),
     "spec.rules[0].targetModels[0]", "exactly one of modelServerName or externalModelProviderName"),
    ("route-bad-regex", ROUTE, _set(**{"spec.rules.0.modelMatch.headers.user-type": {"regex": "(premium"}}),
     "spec.rules[0].modelMatch.headers[user-type].regex", "invalid regular expression"),
    ("route-two-string-matches", ROUTE,
     _set(**{"spec.rules.0.modelMatch.headers.user-type": {"exact": "a", "prefix": "b"}}),
     "spec.rules[0].modelMatch.headers[user-type]", "only one of exact, prefix or regex"),
    ("route-rate-unit", ROUTE, _set(**{"spec.rateLimit.unit": "week"}), "spec.rateLimit.unit", "'second'"),
    ("route-no-targets", ROUTE, lambda d: d["spec"]["rules"][0].update(targetModels=[]),
     "spec.rules[0].targetModels", "at least 1 item"),
    # ModelServer
    ("server-engine", SERVER, _set(**{"spec.inferenceEngine": "TensorRT"}), "spec.inferenceEngine", "'vLLM' or 'SGLang'"),
    ("server-port", SERVER, _set(**{"spec.workloadPort.port": 70000}), "spec.workloadPort.port",
     "less than or equal to 65535"),
    ("server-no-labels", SERVER, _set(**{"spec.workloadSelector.matchLabels": {}}), "spec.workloadSelector.matchLabels",
     "at least one label"),
    ("server-bad-label-key", SERVER, _set(**{"spec.workloadSelector.matchLabels": {"bad key": "x"}}),
     "spec.workloadSelector.matchLabels[bad key]", "label key name"),
    ("server-pd-no-decode-labels", SERVER, _set(**{"spec.workloadSelector.pdGroup.decodeLabels": {}}),
     "spec.workloadSelector.pdGroup.decodeLabels", "at least one label"),
    ("server-kv-connector", SERVER, _set(**{"spec.kvConnector.type": "rdma"}), "spec.kvConnector.type", "'nixl'"),
    # Any kind
    ("wrong-api-version", SERVER, _set(apiVersion="networking.serving.volcano.sh/v1"), "apiVersion",
     "served as networking.serving.volcano.sh/v1alpha1"),
    ("unknown-kind", SERVER, _set(kind="ModelServers"), "kind", "not a Caldera kind"),
]


@pytest.mark.parametrize(("example", "mutate", "path", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_manifest_is_rejected_with_its_field_path(
    example: str, mutate: Callable[[Doc], object], path: str, reason: str
) -> None:
    document = _load(example)
    mutate(document)
    errors = validate_object(document)
    assert any(error.path == path and reason in error.reason for error in errors), errors


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_valid(name: str) -> None:
    for document in yaml.safe_load_all((EXAMPLES / name).read_text()):
        assert validate_object(document) == []


def test_a_non_mapping_document_is_an_error() -> None:
    assert validate_object(["a"])[0].reason == "a manifest must be a mapping, got list"


def test_gang_policy_cannot_be_removed_once_set() -> None:
    old = _load(MS)
    old["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"prefill": 1}}
    errors = validate_transition(old, _load(MS))
    assert [(e.path, e.reason) for e in errors] == [("spec.template.gangPolicy", "gangPolicy is required once set")]


def test_gang_policy_min_role_replicas_is_immutable() -> None:
    old, new = _load(MS), _load(MS)
    old["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"prefill": 1}}
    new["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"prefill": 2}}
    errors = validate_transition(old, new)
    assert [e.path for e in errors] == ["spec.template.gangPolicy.minRoleReplicas"]


def test_route_model_name_is_immutable() -> None:
    new = _load(ROUTE)
    new["spec"]["modelName"] = "other"
    assert [e.reason for e in validate_transition(_load(ROUTE), new)] == ["modelName is immutable"]
