"""Fixtures for the deploy integration tests (helpers live in apirecorder.py beside this file)."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

# The tests import their helpers as a plain module (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))

from apirecorder import RBAC_KINDS, Release, apply, delete

from caldera import helm
from caldera.localcluster.session import LocalCluster


@pytest.fixture(scope="module")
def rbac_release(local_cluster: LocalCluster) -> Iterator[Release]:
    """The chart's ServiceAccounts and RBAC (watching one fresh namespace), applied for real."""
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    namespace = f"{name}-ns"
    api = local_cluster.api_client()
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace, "labels": {"caldera.dev/test": "true"}}})
    api.close()
    rendered = helm.template({"controller": {"watchNamespaces": [namespace]}, "router": {"watchNamespace": namespace}},
                             release=name, namespace=namespace)
    crds = [o for o in rendered if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "kopf.dev"]
    objects = [o for o in rendered if o["kind"] in RBAC_KINDS]
    apply(local_cluster, crds)
    apply(local_cluster, objects)
    try:
        yield Release(name, namespace, objects, local_cluster)
    finally:
        delete(local_cluster, objects)
        api = local_cluster.api_client()
        client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")
        api.close()


@pytest.fixture(scope="module")
def work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="caldera-rbac-") as directory:
        yield Path(directory)
