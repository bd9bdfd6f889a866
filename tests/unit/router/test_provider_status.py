"""ExternalModelProvider status conditions as the router writes them (router.providers.status)."""

from __future__ import annotations

from typing import Any

from router.providers.provider import compile_providers
from router.providers.status import desired_status


def obj(status: dict[str, Any] | None = None, generation: int = 3) -> dict[str, Any]:
    o: dict[str, Any] = {"apiVersion": "networking.serving.volcano.sh/v1alpha1", "kind": "ExternalModelProvider",
                         "metadata": {"name": "p", "namespace": "ns", "generation": generation},
                         "spec": {"baseURL": "https://h"}}
    if status is not None:
        o["status"] = status
    return o


def test_a_new_provider_gets_both_conditions_and_its_observed_generation() -> None:
    (provider,) = compile_providers([obj()], [])
    status = desired_status(obj(), provider, now="T1")
    assert status is not None
    assert status["observedGeneration"] == 3
    assert {c["type"]: (c["status"], c["reason"], c["lastTransitionTime"]) for c in status["conditions"]} == {
        "CredentialsResolved": ("True", "CredentialNotRequired", "T1"), "Ready": ("True", "Ready", "T1")}


def test_a_status_that_already_says_so_is_not_written_again() -> None:
    (provider,) = compile_providers([obj()], [])
    written = desired_status(obj(), provider, now="T1")
    assert desired_status(obj(written), provider, now="T2") is None


def test_an_unchanged_condition_keeps_its_transition_time_when_the_generation_moves() -> None:
    (provider,) = compile_providers([obj()], [])
    written = desired_status(obj(), provider, now="T1")
    status = desired_status(obj(written, generation=4), provider, now="T2")
    assert status is not None
    assert {c["lastTransitionTime"] for c in status["conditions"]} == {"T1"}
    assert {c["observedGeneration"] for c in status["conditions"]} == {4}


def test_a_flipped_condition_gets_a_new_transition_time() -> None:
    (ready,) = compile_providers([obj()], [])
    written = desired_status(obj(), ready, now="T1")
    broken = obj(written)
    broken["spec"]["auth"] = {"secretRef": {"name": "gone", "key": "k"}}
    (not_ready,) = compile_providers([broken], [])
    status = desired_status(broken, not_ready, now="T2")
    assert status is not None
    assert {c["type"]: (c["status"], c["lastTransitionTime"]) for c in status["conditions"]} == {
        "CredentialsResolved": ("False", "T2"), "Ready": ("False", "T2")}


def test_conditions_of_other_types_are_kept() -> None:
    (provider,) = compile_providers([obj()], [])
    other = {"type": "Audited", "status": "True", "reason": "x", "message": "y", "lastTransitionTime": "T0"}
    status = desired_status(obj({"conditions": [other]}), provider, now="T1")
    assert status is not None and other in status["conditions"]
