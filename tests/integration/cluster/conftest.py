"""A private `small` cluster for the tests that need most of its GPUs: the shared
`local_cluster` is used by other areas' tests at the same time, whose pods would take the
capacity these placements are about."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from caldera.localcluster import session, wait
from caldera.localcluster.session import LocalCluster


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with session.private(tmp_path_factory.mktemp("private-cluster"), label="private_cluster") as cluster:
        yield cluster


@pytest.fixture
def private_namespace(private_cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace on the private cluster; its pods are gone before the next test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    api = private_cluster.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
        wait.until(lambda: not core.list_namespaced_pod(name).items, 60, f"pods of namespace {name} deleted")
        api.close()
