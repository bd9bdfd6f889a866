"""A controller limited by a namespace pattern serves every matching namespace, including
the ones created while it starts.

kopf lists the namespaces just after the controller reports ready, then starts a namespace
watch that lists them again; a namespace created between the two listings used to be dropped
for good (nothing in it was ever reconciled). The test creates namespaces back to back, from
several threads, from readiness until well past that point, then a ModelServing in each, and
expects every ModelServing to be reconciled.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.localcluster import wait
from caldera.localcluster.session import LocalCluster

GROUP, VERSION, PLURAL = "workload.serving.volcano.sh", "v1alpha1", "modelservings"
WORKERS = 8
PER_WORKER = 6  # a bound, should the controller be slow to reach the point the test waits for
AFTER = 8  # namespaces still created once kopf's namespace watch has certainly listed


class Namespaces:
    """Namespaces of one pattern, each holding one ModelServing with no replicas (cheap to reconcile)."""

    def __init__(self, cluster: LocalCluster, prefix: str, manifest: dict[str, Any]) -> None:
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)  # its annotations say `object`
        self.prefix = prefix
        self.manifest = manifest
        self.names: list[str] = []
        self.lock = threading.Lock()

    def create(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        self.core.create_namespace(client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"caldera.dev/test": "true"})))
        with self.lock:
            self.names.append(name)
        return name

    def create_modelserving(self, namespace: str) -> None:
        body = copy.deepcopy(self.manifest)
        body["metadata"]["namespace"] = namespace
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def count(self) -> int:
        with self.lock:
            return len(self.names)

    def reconciled(self, name: str) -> bool:
        ms = self.custom.get_namespaced_custom_object(GROUP, VERSION, name, PLURAL, "sample")
        return bool((ms.get("status") or {}).get("observedGeneration") == ms["metadata"]["generation"])

    def unreconciled(self) -> list[str]:
        with self.lock:
            names = list(self.names)
        return [n for n in names if not self.reconciled(n)]

    def delete(self) -> None:
        # ModelServings first, while the controller still runs to release kopf's finalizer.
        for name in self.names:
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, name, PLURAL, "sample")
            except ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            wait.until(lambda: not any(self.custom.list_namespaced_custom_object(GROUP, VERSION, n, PLURAL)["items"]
                                       for n in self.names), 60, "ModelServings deleted")
        finally:
            for name in self.names:
                self.core.delete_namespace(name, propagation_policy="Background")
            self.api.close()


@pytest.fixture
def namespaces(local_cluster: LocalCluster, unstarted_controller: Any, seed: dict[str, Any]) -> Iterator[Namespaces]:
    manifest = copy.deepcopy(seed)
    manifest["spec"]["replicas"] = 0
    ns = Namespaces(local_cluster, unstarted_controller.pattern.rstrip("*"), manifest)
    try:
        yield ns
    finally:
        ns.delete()


@pytest.mark.cluster
def test_modelservings_in_namespaces_created_while_the_controller_starts_are_reconciled(
        namespaces: Namespaces, unstarted_controller: Any) -> None:
    before = namespaces.create("before")
    namespaces.create_modelserving(before)
    go, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def storm(worker: int) -> None:
        try:
            go.wait()
            for i in range(PER_WORKER):
                if stop.is_set():
                    return
                namespaces.create(f"{worker}-{i:02d}")
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=storm, args=(w,), daemon=True) for w in range(WORKERS)]
    for t in threads:
        t.start()
    try:
        unstarted_controller.start(wait=False)
        wait.until(unstarted_controller.ready, 60, "controller readiness", interval=0.01)
        go.set()
        # The namespace that existed before start is served once kopf's first namespace listing is
        # done and its watches have listed: by then the namespace watch has started its own listing.
        wait.until(lambda: namespaces.reconciled(before), 60, "the ModelServing of the namespace made before start")
        seen = namespaces.count()
        wait.until(lambda: namespaces.count() >= seen + AFTER or not any(t.is_alive() for t in threads), 60,
                   f"{AFTER} more namespaces created", interval=0.05)
    finally:
        go.set()
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    for name in namespaces.names[1:]:
        namespaces.create_modelserving(name)
    try:
        wait.until(lambda: not namespaces.unreconciled(), 60, "every ModelServing reconciled")
    except TimeoutError:
        pytest.fail(f"never reconciled (their namespaces were not served): {namespaces.unreconciled()}")
