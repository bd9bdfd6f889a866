"""crds/ is generated from the models, structural, and carries Kthena's API-server rules."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from caldera.crdgen import crd, crds_command, generate_all, stale_files, structural_violations
from webhooks.kinds import BY_KIND, RESOURCES

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd(BY_KIND[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _rules(node: dict[str, Any]) -> list[str]:
    return [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]


def test_committed_crds_match_the_models() -> None:
    assert stale_files(CRDS) == {}, "run `caldera crds generate` and commit crds/"


def test_crds_generate_check_passes_on_the_committed_files() -> None:
    result = CliRunner().invoke(crds_command, ["generate", "--check", "--output-dir", str(CRDS)])
    assert result.exit_code == 0, result.output


def test_crds_generate_check_fails_when_a_file_differs(tmp_path: Path) -> None:
    CliRunner().invoke(crds_command, ["generate", "--output-dir", str(tmp_path)])
    target = tmp_path / "workload.serving.volcano.sh_modelservings.yaml"
    target.write_text(target.read_text().replace("maxLength: 12", "maxLength: 13"))
    result = CliRunner().invoke(crds_command, ["generate", "--check", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "modelservings" in result.output


def test_one_file_per_crd() -> None:
    assert sorted(generate_all()) == sorted(f"{r.group}_{r.plural}.yaml" for r in RESOURCES)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_every_schema_is_structural(resource: Any) -> None:
    document = yaml.safe_load((CRDS / f"{resource.group}_{resource.plural}.yaml").read_text())
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_violations(schema) == []


def test_structural_checker_rejects_a_missing_type() -> None:
    assert structural_violations({"type": "object", "properties": {"a": {"description": "x"}}}) == [
        "a: type is missing"
    ]


def test_structural_checker_rejects_properties_with_additional_properties() -> None:
    problems = structural_violations(
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}
    )
    assert problems == ["<root>: properties and additionalProperties are mutually exclusive"]


def test_structural_checker_rejects_types_inside_any_of() -> None:
    problems = structural_violations({"type": "string", "anyOf": [{"type": "string", "pattern": "a"}]})
    assert problems == ["<root>.anyOf[0]: type is not allowed inside anyOf"]


def test_structural_checker_accepts_int_or_string() -> None:
    schema = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    assert structural_violations(schema) == []


def test_modelserving_has_status_and_scale_subresources() -> None:
    version = crd(BY_KIND["ModelServing"])["spec"]["versions"][0]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.labelSelector",
        },
    }


def test_modelserving_printer_columns_short_names_and_categories() -> None:
    spec = crd(BY_KIND["ModelServing"])["spec"]
    columns = [c["name"] for c in spec["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Replicas", "Available", "Updated", "Age"]
    assert spec["names"]["shortNames"] == ["ms"]
    assert "caldera" in spec["names"]["categories"]


def test_pod_template_schema_is_the_real_podspec_without_preserve_unknown_fields() -> None:
    role = _schema("ModelServing")["properties"]["spec"]["properties"]["template"]["properties"]["roles"]["items"]
    pod = role["properties"]["entryTemplate"]["properties"]["spec"]
    container = pod["properties"]["containers"]["items"]
    assert pod["required"] == ["containers"]
    assert "image" in container["properties"] and "x-kubernetes-preserve-unknown-fields" not in yaml.safe_dump(pod)


def test_quantities_are_int_or_string_with_the_quantity_pattern() -> None:
    role = _schema("ModelServing")["properties"]["spec"]["properties"]["template"]["properties"]["roles"]["items"]
    container = role["properties"]["entryTemplate"]["properties"]["spec"]["properties"]["containers"]["items"]
    limits = container["properties"]["resources"]["properties"]["limits"]["additionalProperties"]
    assert limits["x-kubernetes-int-or-string"] is True
    assert limits["pattern"].startswith("^(\\+|-)?")


def test_max_unavailable_is_int_or_string_defaulting_to_1() -> None:
    role = _schema("ModelServing")["properties"]["spec"]["properties"]["template"]["properties"]["roles"]["items"]
    field = role["properties"]["maxUnavailable"]
    assert field["x-kubernetes-int-or-string"] is True and field["default"] == 1


def test_kthena_cel_rules_are_on_the_modelserving_schema() -> None:
    template = _schema("ModelServing")["properties"]["spec"]["properties"]["template"]
    assert _rules(template)[0] == "!has(oldSelf.gangPolicy) || has(self.gangPolicy)"
    assert "self.gangPolicy.minRoleReplicas.all(" in _rules(template)[1]
    assert _rules(template["properties"]["roles"]) == ["self.all(x, self.exists_one(y, y.name == x.name))"]
    assert _rules(template["properties"]["gangPolicy"]["properties"]["minRoleReplicas"]) == ["self == oldSelf"]
    assert (template["properties"]["roles"]["minItems"], template["properties"]["roles"]["maxItems"]) == (1, 4)


def test_role_rules_the_webhook_has_are_also_cel_rules() -> None:
    roles = _schema("ModelServing")["properties"]["spec"]["properties"]["template"]["properties"]["roles"]
    assert _rules(roles["items"]) == ["self.workerReplicas == 0 || has(self.workerTemplate)"]
    assert _rules(roles["items"]["properties"]["name"]) == ["self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"]


def test_binding_schema_requires_exactly_one_target() -> None:
    spec = _schema("AutoscalingPolicyBinding")["properties"]["spec"]
    assert _rules(spec) == ["has(self.heterogeneousTarget) != has(self.homogeneousTarget)"]


def test_policy_schema_accepts_both_generations() -> None:
    spec = _schema("AutoscalingPolicy")["properties"]["spec"]
    assert {"metrics", "tolerancePercent", "behavior"} <= spec["properties"].keys()
    assert {"homogeneousTarget", "heterogeneousTarget", "disaggregatedTarget"} <= spec["properties"].keys()
    metric = spec["properties"]["metrics"]["items"]
    assert {"name", "metricName", "targetValue"} <= metric["properties"].keys()
    assert spec.get("required") is None


def test_ratio_constraint_requires_two_roles() -> None:
    target = _schema("AutoscalingPolicy")["properties"]["spec"]["properties"]["disaggregatedTarget"]
    assert "!has(self.ratioConstraint) || size(self.roles) >= 2" in _rules(target)


def test_route_weights_are_bounded_and_default_to_100() -> None:
    rules = _schema("ModelRoute")["properties"]["spec"]["properties"]["rules"]["items"]
    weight = rules["properties"]["targetModels"]["items"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"], weight["default"]) == (0, 100, 100)


def test_panic_threshold_limits_are_kthenas() -> None:
    behavior = _schema("AutoscalingPolicy")["properties"]["spec"]["properties"]["behavior"]
    panic = behavior["properties"]["scaleUp"]["properties"]["panicPolicy"]["properties"]
    threshold = panic["panicThresholdPercent"]
    assert (threshold["minimum"], threshold["maximum"], threshold["default"]) == (110, 1000, 200)
