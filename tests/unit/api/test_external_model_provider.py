"""ExternalModelProvider: the model, its CRD and the admission rules (Kthena's provider webhook)."""

from __future__ import annotations

from typing import Any

import pytest

from caldera.crdgen import crd
from webhooks.defaulting import defaults_for
from webhooks.errors import FieldError
from webhooks.kinds import BY_KIND
from webhooks.validation import validate_object


def provider(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.serving.volcano.sh/v1alpha1", "kind": "ExternalModelProvider",
            "metadata": {"name": "openai", "namespace": "team-a"},
            "spec": {"baseURL": "https://api.openai.com", **spec}}


def errors_of(obj: dict[str, Any]) -> list[FieldError]:
    return validate_object(obj)


def test_a_minimal_provider_is_valid() -> None:
    assert errors_of(provider()) == []


def test_a_full_provider_with_bearer_auth_and_headers_is_valid() -> None:
    obj = provider(providerType="Anthropic", model="claude-x", insecureSkipVerify=True,
                   auth={"scheme": "Bearer", "secretRef": {"name": "creds", "key": "token"}},
                   headers={"OpenAI-Organization": "org-1"})
    assert errors_of(obj) == []


def test_plain_http_base_url_is_rejected_on_base_url() -> None:
    errors = errors_of(provider(baseURL="http://api.example.com"))
    assert [e.path for e in errors] == ["spec.baseURL"]


def test_base_url_with_a_query_is_rejected_naming_the_reason() -> None:
    assert errors_of(provider(baseURL="https://api.example.com/v1?x=1")) == [
        FieldError("spec.baseURL", "baseURL must not contain userinfo, query, or fragment")]


def test_base_url_with_userinfo_is_rejected() -> None:
    assert [e.path for e in errors_of(provider(baseURL="https://user:pw@api.example.com"))] == ["spec.baseURL"]


def test_auth_without_secret_ref_is_rejected_as_required() -> None:
    assert errors_of(provider(auth={"scheme": "Bearer"})) == [FieldError("spec.auth.secretRef", "required value")]


def test_secret_ref_without_a_name_is_rejected() -> None:
    assert errors_of(provider(auth={"secretRef": {"key": "token"}})) == [
        FieldError("spec.auth.secretRef.name", "secret name is required")]


def test_secret_ref_with_an_empty_key_is_rejected() -> None:
    assert errors_of(provider(auth={"secretRef": {"name": "creds", "key": ""}})) == [
        FieldError("spec.auth.secretRef.key", "secret key is required")]


def test_optional_secret_ref_is_rejected() -> None:
    errors = errors_of(provider(auth={"secretRef": {"name": "creds", "key": "token", "optional": True}}))
    assert [e.path for e in errors] == ["spec.auth.secretRef.optional"]


def test_unknown_auth_scheme_is_rejected_on_scheme() -> None:
    errors = errors_of(provider(auth={"scheme": "Basic", "secretRef": {"name": "creds", "key": "token"}}))
    assert [e.path for e in errors] == ["spec.auth.scheme"]


def test_unknown_provider_type_is_rejected_on_provider_type() -> None:
    assert [e.path for e in errors_of(provider(providerType="Gemini"))] == ["spec.providerType"]


def test_a_reserved_static_header_is_rejected_with_its_key() -> None:
    assert errors_of(provider(headers={"Authorization": "Bearer sneaky"})) == [FieldError(
        "spec.headers[Authorization]", "header is reserved and cannot be configured as a static header")]


def test_a_static_header_value_with_a_newline_is_rejected() -> None:
    errors = errors_of(provider(headers={"X-Team": "a\r\nInjected: 1"}))
    assert [e.path for e in errors] == ["spec.headers[X-Team]"]


def test_an_invalid_static_header_name_is_rejected() -> None:
    assert [e.path for e in errors_of(provider(headers={"bad header": "x"}))] == ["spec.headers[bad header]"]


def test_a_missing_base_url_is_required() -> None:
    obj = provider()
    del obj["spec"]["baseURL"]
    assert errors_of(obj) == [FieldError("spec.baseURL", "required value")]


def test_defaulting_adds_provider_type_and_insecure_skip_verify() -> None:
    added = {d.path: d.value for d in defaults_for(provider())}
    assert added == {"spec.providerType": "OpenAI", "spec.insecureSkipVerify": False}


def test_the_crd_requires_an_https_base_url_and_has_a_status_subresource() -> None:
    version = crd(BY_KIND["ExternalModelProvider"])["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["baseURL"]
    assert spec["properties"]["baseURL"]["pattern"] == "^https://.+"
    assert version["subresources"] == {"status": {}}


def test_the_crd_rejects_an_optional_secret_ref_with_a_cel_rule() -> None:
    spec = crd(BY_KIND["ExternalModelProvider"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"]
    rules = [r["rule"] for r in spec["properties"]["auth"]["x-kubernetes-validations"]]
    assert rules == ["!has(self.secretRef.optional) || !self.secretRef.optional"]


@pytest.mark.parametrize("reason", ["Ready", "CredentialsResolved"])
def test_status_conditions_round_trip(reason: str) -> None:
    obj = provider()
    obj["status"] = {"observedGeneration": 2, "conditions": [
        {"type": reason, "status": "True", "reason": "x", "message": "y", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    assert errors_of(obj) == []
