"""Every object the chart renders is accepted by a real kube-apiserver (server-side apply,
dry run: schemas, defaults and admission checked, nothing persisted): the default values,
chart-owned webhooks with generated certificates, and the Grafana dashboard ConfigMap."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, dynamic

from caldera import helm
from caldera.localcluster.resources import Client
from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster


@pytest.fixture
def release_namespace(local_cluster: LocalCluster) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:6]}"
    api = local_cluster.api_client()
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": {"caldera.dev/test": "true"}}})
    try:
        yield name
    finally:
        client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")
        api.close()


def dry_run_apply(local_cluster: LocalCluster, objects: list[dict[str, Any]]) -> dict[str, str]:
    """kind/name -> the API server's refusal, for every object it refuses."""
    api = local_cluster.api_client()
    dyn = dynamic.DynamicClient(api)
    refused = {}
    for obj in objects:
        try:
            resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            dyn.server_side_apply(resource, body=obj, namespace=obj["metadata"].get("namespace"),
                                  field_manager="caldera-chart-test", force_conflicts=True, dry_run="All")
        except Exception as exc:  # the refusal itself is the finding
            refused[f"{obj['kind']}/{obj['metadata']['name']}"] = str(exc)[:500]
    api.close()
    return refused


@pytest.mark.parametrize("values", [
    {},
    {"webhooks": {"certificate": {"mode": "helm"}}, "grafana": {"dashboard": {"enabled": True}},
     "controller": {"watchNamespaces": ["default"]}},
], ids=["defaults", "chart-owned-webhooks-dashboard-namespaced"])
def test_api_server_accepts_every_rendered_object(
        local_cluster: LocalCluster, release_namespace: str, values: dict[str, Any]) -> None:
    rendered = helm.template(values, release=release_namespace, namespace=release_namespace)
    crds = [o for o in rendered if o["kind"] == "CustomResourceDefinition"]
    # Helm installs crds/ before the templates; do the same (they match what `cluster up` applied).
    Client(local_cluster.kubeconfig).apply_objects(crds)
    Client(local_cluster.kubeconfig).wait_crds_established([c["metadata"]["name"] for c in crds], timeout=60)
    objects = [o for o in rendered if o["kind"] != "CustomResourceDefinition"]
    assert objects
    assert not dry_run_apply(local_cluster, objects)
