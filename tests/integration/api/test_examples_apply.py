"""The generated CRDs on a real kube-apiserver: every example applies, the schema rejects what Kthena's does."""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.crdgen import structural_violations
from caldera.localcluster import resources
from modelserving.api import ModelServing
from webhooks.kinds import BY_KIND, RESOURCES, Resource
from webhooks.validation import validate_object

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CRDS = Path(__file__).resolve().parents[3] / "crds"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


@pytest.fixture(scope="module", autouse=True)
def current_crds(local_cluster: Any) -> None:
    """A reused cluster may hold CRDs from an older commit: apply the committed ones (idempotent)."""
    crd_client = resources.Client(local_cluster.kubeconfig)
    names = crd_client.apply_files(sorted(CRDS.glob("*.yaml")))
    crd_client.wait_crds_established(names, timeout=60)


@pytest.fixture
def custom(local_cluster: Any) -> Iterator[client.CustomObjectsApi]:
    api = local_cluster.api_client()
    try:
        yield client.CustomObjectsApi(api)
    finally:
        api.close()


def _create(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    resource = BY_KIND[body["kind"]]
    body = copy.deepcopy(body)
    body["metadata"].pop("namespace", None)
    created: Any = api.create_namespaced_custom_object(
        resource.group, resource.version, namespace, resource.plural, body, field_validation="Strict"
    )
    return created


def _rejection(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        _create(api, namespace, body)
    assert caught.value.status in (400, 422), caught.value.body
    status = json.loads(caught.value.body or "{}")
    return f"{status['message']} {json.dumps(status.get('details', {}))}"


def _sample() -> dict[str, Any]:
    return _documents(EXAMPLES / "modelserving-network-topology.yaml")[0]


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_the_api_server_holds_our_crd_as_structural(local_cluster: Any, resource: Resource) -> None:
    api = local_cluster.api_client()
    try:
        crd: Any = client.ApiextensionsV1Api(api).read_custom_resource_definition(resource.crd_name)
    finally:
        api.close()
    conditions = {c.type: c.status for c in crd.status.conditions or []}
    assert conditions.get("Established") == "True"
    assert conditions.get("NonStructuralSchema") is None
    schema = api.sanitize_for_serialization(crd.spec.versions[0].schema.open_apiv3_schema)
    assert structural_violations(schema) == []


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_is_accepted_by_the_api_server(
    custom: client.CustomObjectsApi, cluster_namespace: str, path: Path
) -> None:
    for document in _documents(path):
        created = _create(custom, cluster_namespace, document)
        # What the API server stored (with its defaults) is still valid for the models.
        assert validate_object(created) == []


def test_the_api_server_applies_the_same_defaults_as_the_models(
    custom: client.CustomObjectsApi, cluster_namespace: str
) -> None:
    created = _create(custom, cluster_namespace, _sample())
    stored = ModelServing.model_validate(created)
    assert stored.spec.recovery_policy == "RoleRecreate"
    assert stored.spec.template.roles[0].max_unavailable == 1
    assert created["spec"]["template"]["restartGracePeriodSeconds"] == 0


def test_an_unknown_field_in_a_pod_template_is_rejected(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _sample()
    body["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["imagee"] = "typo"
    message = _rejection(custom, cluster_namespace, body)
    assert "spec.template.roles[0].entryTemplate.spec.containers[0].imagee" in message


def test_a_quantity_that_is_not_one_is_rejected(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _sample()
    body["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["resources"]["limits"] = {
        "nvidia.com/gpu": "four"
    }
    assert "nvidia.com/gpu" in _rejection(custom, cluster_namespace, body)


def test_a_role_name_over_12_characters_is_rejected(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _sample()
    body["spec"]["template"]["roles"][0]["name"] = "prefill-stage"
    assert "spec.template.roles[0].name" in _rejection(custom, cluster_namespace, body)


def test_an_uppercase_role_name_is_rejected_by_cel(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _sample()
    body["spec"]["template"]["roles"][0]["name"] = "Prefill"
    assert "role name must be a valid DNS-1035 label" in _rejection(custom, cluster_namespace, body)


def test_workers_without_a_worker_template_are_rejected_by_cel(
    custom: client.CustomObjectsApi, cluster_namespace: str
) -> None:
    body = _sample()
    del body["spec"]["template"]["roles"][0]["workerTemplate"]
    message = _rejection(custom, cluster_namespace, body)
    assert "spec.template.roles[0].workerTemplate" in message
    assert "workerTemplate is required when workerReplicas is greater than 0" in message


def test_a_gang_policy_naming_a_missing_role_is_rejected_by_cel(
    custom: client.CustomObjectsApi, cluster_namespace: str
) -> None:
    body = _sample()
    body["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"router": 1}}
    message = _rejection(custom, cluster_namespace, body)
    assert "spec.template.gangPolicy.minRoleReplicas" in message


def test_a_gang_minimum_above_the_role_replicas_is_rejected_by_cel(
    custom: client.CustomObjectsApi, cluster_namespace: str
) -> None:
    body = _sample()
    body["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"prefill": 3}}
    assert "0 <= minRoleReplicas <= its replicas" in _rejection(custom, cluster_namespace, body)


def test_duplicate_role_names_are_rejected_by_cel(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _sample()
    body["spec"]["template"]["roles"][1]["name"] = "prefill"
    assert "roles name must be unique" in _rejection(custom, cluster_namespace, body)


def test_tier_zero_is_rejected(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _sample()
    body["spec"]["template"]["networkTopology"]["groupPolicy"]["highestTierAllowed"] = 0
    assert "highestTierAllowed" in _rejection(custom, cluster_namespace, body)


def test_gang_policy_cannot_be_removed_once_set(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _sample()
    body["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"prefill": 1, "decode": 1}}
    created = _create(custom, cluster_namespace, body)
    del created["spec"]["template"]["gangPolicy"]
    resource = BY_KIND["ModelServing"]
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(
            resource.group, resource.version, cluster_namespace, resource.plural, created["metadata"]["name"], created
        )
    assert "gangPolicy is required once set" in json.loads(caught.value.body or "{}")["message"]


def test_a_binding_with_both_targets_is_rejected_by_cel(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _documents(EXAMPLES / "autoscalingpolicybinding-homogeneous.yaml")[0]
    hetero = _documents(EXAMPLES / "autoscalingpolicybinding-heterogeneous.yaml")[0]
    body["spec"]["heterogeneousTarget"] = hetero["spec"]["heterogeneousTarget"]
    assert "Either heterogeneousTarget or homogeneousTarget must be set" in _rejection(custom, cluster_namespace, body)


def test_a_route_weight_over_100_is_rejected(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    body = _documents(EXAMPLES / "modelroute-canary.yaml")[0]
    body["spec"]["rules"][1]["targetModels"][0]["weight"] = 101
    assert "weight" in _rejection(custom, cluster_namespace, body)


def test_the_scale_subresource_sets_spec_replicas(custom: client.CustomObjectsApi, cluster_namespace: str) -> None:
    created = _create(custom, cluster_namespace, _sample())
    resource = BY_KIND["ModelServing"]
    name = created["metadata"]["name"]
    custom.patch_namespaced_custom_object_scale(
        resource.group, resource.version, cluster_namespace, resource.plural, name, {"spec": {"replicas": 2}}
    )
    stored: Any = custom.get_namespaced_custom_object(
        resource.group, resource.version, cluster_namespace, resource.plural, name
    )
    assert stored["spec"]["replicas"] == 2
