"""The kopf admission handlers run the validation and defaulting rules on real kopf objects."""

from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

import webhooks.handlers  # noqa: F401  (importing registers the handlers)
from webhooks.defaulting import apply_defaults
from webhooks.kinds import RESOURCES

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _handler(handler_id: str) -> Any:
    registry = kopf.get_default_registry()
    handlers = {str(h.id): h for h in registry._webhooks.get_all_handlers()}
    return handlers[handler_id].fn


def _body(document: Any) -> kopf.Body:
    return kopf.Body(document)


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return document


def test_every_kind_has_a_validating_and_a_defaulting_handler() -> None:
    registry = kopf.get_default_registry()
    ids = {h.id for h in registry._webhooks.get_all_handlers()}
    for resource in RESOURCES:
        assert {f"validate-{resource.plural}", f"default-{resource.plural}"} <= ids


def test_a_valid_object_is_admitted() -> None:
    body = _body(_load("modelserving-network-topology.yaml"))
    assert _handler("validate-modelservings")(body=body, old=None) is None


def test_an_invalid_object_is_refused_with_422_and_the_field_path() -> None:
    document = _load("modelserving-network-topology.yaml")
    del document["spec"]["template"]["roles"][0]["workerTemplate"]
    with pytest.raises(kopf.AdmissionError) as caught:
        _handler("validate-modelservings")(body=_body(document), old=None)
    assert caught.value.code == 422
    assert "spec.template.roles[0].workerTemplate: workerTemplate is required" in str(caught.value)


def test_an_update_removing_the_gang_policy_is_refused() -> None:
    old = _load("modelserving-network-topology.yaml")
    old["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"prefill": 1}}
    new = _load("modelserving-network-topology.yaml")
    with pytest.raises(kopf.AdmissionError, match="gangPolicy is required once set"):
        _handler("validate-modelservings")(body=_body(new), old=_body(old))


def test_the_defaulting_handler_patches_an_absent_behavior() -> None:
    document = _load("autoscalingpolicy-optimizer.yaml")
    body = _body(document)
    patch = kopf.Patch(body=body)
    _handler("default-autoscalingpolicies")(body=body, patch=patch)
    operations = {(op["op"], op["path"]) for op in patch.as_json_patch()}
    assert ("add", "/spec/behavior") in operations


def test_the_defaulting_handler_leaves_a_complete_object_alone() -> None:
    document = apply_defaults(_load("modelroute-canary.yaml"))
    body = _body(document)
    patch = kopf.Patch(body=body)
    _handler("default-modelroutes")(body=body, patch=patch)
    assert patch.as_json_patch() == []
