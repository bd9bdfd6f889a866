"""What the webhooks leave behind when the controller stops.

kopf registers every handler with failurePolicy Fail and, on a graceful stop, empties the
configurations it manages; a killed controller cannot, so until a controller is back the API
server refuses writes of Caldera kinds rather than admit them unchecked.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from caldera.localcluster import wait

pytestmark = pytest.mark.cluster


def model_serving(name: str) -> dict[str, Any]:
    return {"apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "ModelServing", "metadata": {"name": name},
            "spec": {"replicas": 1, "template": {"roles": [{
                "name": "decode", "replicas": 1, "workerReplicas": 0,
                "entryTemplate": {"spec": {"containers": [{"name": "engine", "image": "registry.local/engine:v1"}]}}}]}}}


def test_graceful_stop_deregisters_webhooks_so_model_servings_can_be_created(
        namespace: Any, fresh_controller: Any, start_registered: Any) -> None:
    start_registered(fresh_controller, namespace)
    fresh_controller.stop()
    validating, mutating = namespace.webhooks()
    assert [*validating, *mutating] == []
    assert namespace.create(model_serving("after-stop"))["metadata"]["name"] == "after-stop"


def test_killed_controller_refuses_model_servings_until_one_is_back(
        namespace: Any, fresh_controller: Any, start_registered: Any) -> None:
    start_registered(fresh_controller, namespace)
    fresh_controller.kill()
    with pytest.raises(ApiException) as refused:
        namespace.create(model_serving("while-down"))
    assert "failed calling webhook" in str(refused.value.body)
    start_registered(fresh_controller, namespace)
    created = wait.until(lambda: _created(namespace, "after-restart"), 30, "a ModelServing admitted", 0.2)
    assert created["metadata"]["name"] == "after-restart"


def _created(namespace: Any, name: str) -> dict[str, Any] | None:
    """The restarted server may take a moment to accept connections after kopf re-registers it."""
    try:
        return dict(namespace.create(model_serving(name)))
    except ApiException as exc:
        if "failed calling webhook" in str(exc.body):
            return None
        raise
