"""Shared fixtures. `local_cluster` (session) brings up, or reuses, the embedded local cluster;
see caldera/localcluster/__init__.py for its attributes. A missing binary is built (cached
in ~/.cache/caldera/bin), never skipped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from caldera.localcluster import build, session
from caldera.localcluster.session import LocalCluster


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test marked `cluster` needs the cluster even if it does not name the fixture.
    for item in items:
        if item.get_closest_marker("cluster") and "local_cluster" not in getattr(item, "fixturenames", []):
            item.fixturenames.insert(0, "local_cluster")  # type: ignore[attr-defined]


def pytest_collection_finish(session: pytest.Session) -> None:
    # Build missing binaries (cached after the first time) before any test starts, so a cold
    # build is not cut short by the per-test timeout that covers fixture set-up.
    if any(item.get_closest_marker("cluster") for item in session.items):
        build.build_all(lambda message: print(f"[local_cluster] {message}", flush=True))


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    def progress(message: str) -> None:
        print(f"[local_cluster] {message}", flush=True)

    cluster = session.acquire(progress=progress)
    try:
        yield cluster
    finally:
        session.release(cluster, progress=progress)


@pytest.fixture
def cluster_namespace(local_cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace on the local cluster, deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    api = local_cluster.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": {"caldera.dev/test": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
        api.close()
