"""The seed example (prefill 2x(1+1), decode 1x(1+1), groupPolicy tier 2, rolePolicy tier 1) and helpers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from modelserving.desired import PodOptions
from modelserving.observed import Observed
from modelserving.plan import Create, Delete, DeleteMatching, Patch, Plan, plan
from modelserving.spec import ModelServing, parse_modelserving


def pod_template(gpus: int = 4, image: str = "caldera/enginesim:latest") -> dict[str, Any]:
    return {
        "spec": {
            "containers": [{
                "name": "engine",
                "image": image,
                "env": [{"name": "WORKER_INDEX", "value": "stale"}, {"name": "KEEP", "value": "1"}],
                "resources": {"requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": str(gpus)},
                              "limits": {"nvidia.com/gpu": str(gpus)}},
            }],
        }
    }


def seed_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1",
        "kind": "ModelServing",
        "metadata": {"name": "sample", "namespace": "default", "uid": "uid-1", "generation": 1,
                     "annotations": {"scheduling.volcano.sh/queue-name": "llm"}},
        "spec": {
            "schedulerName": "volcano",
            "replicas": 1,
            "template": {
                "networkTopology": {"groupPolicy": {"mode": "hard", "highestTierAllowed": 2},
                                    "rolePolicy": {"mode": "hard", "highestTierAllowed": 1}},
                "roles": [
                    {"name": "prefill", "replicas": 2, "workerReplicas": 1,
                     "entryTemplate": pod_template(), "workerTemplate": pod_template()},
                    {"name": "decode", "replicas": 1, "workerReplicas": 1,
                     "entryTemplate": pod_template(), "workerTemplate": pod_template()},
                ],
            },
        },
    }


@pytest.fixture
def seed() -> dict[str, Any]:
    return seed_manifest()


@pytest.fixture
def seed_ms(seed: dict[str, Any]) -> ModelServing:
    return parse_modelserving(seed)


class ObjectStore:
    """Applies plans to an in-memory object store, and lets tests set pod status.

    It stands for no real component: it only replays plans over dicts, so unit tests can drive
    the pure core through many reconciles. Integration tests run the real thing.
    """

    def __init__(self, manifest: dict[str, Any], options: PodOptions | None = None) -> None:
        self.manifest = manifest
        self.obs = Observed()
        self.options = options or PodOptions()
        self.uid = 0
        self.now = 1_000_000.0

    @property
    def ms(self) -> ModelServing:
        return parse_modelserving(self.manifest)

    def store(self, kind: str) -> dict[str, Any]:
        return {"Pod": self.obs.pods, "Service": self.obs.services, "PodGroup": self.obs.podgroups,
                "ControllerRevision": self.obs.revisions}[kind]

    def reconcile(self) -> Plan:
        p = plan(self.ms, self.obs, self.options, self.now)
        self.apply(p)
        return p

    def apply(self, p: Plan) -> None:
        for action in p.actions:
            if isinstance(action, Create):
                body = copy.deepcopy(action.body)
                self.uid += 1
                body["metadata"]["uid"] = f"u{self.uid}"
                store = self.store(action.kind)
                assert body["metadata"]["name"] not in store, f"duplicate create of {body['metadata']['name']}"
                store[body["metadata"]["name"]] = body
            elif isinstance(action, Patch):
                obj = self.store(action.kind)[action.name]
                for key, value in action.patch.items():
                    if isinstance(value, dict):
                        obj.setdefault(key, {}).update(value)
                    else:
                        obj[key] = value
            elif isinstance(action, Delete):
                self.store(action.kind).pop(action.name, None)
            elif isinstance(action, DeleteMatching):
                for name in [n for n, o in self.obs.pods.items()
                             if all(o["metadata"]["labels"].get(k) == v for k, v in action.labels.items())]:
                    del self.obs.pods[name]
        if p.status_patch:
            self.manifest.setdefault("status", {}).update(p.status_patch)

    def set_running(self, names: Callable[[str], bool] = lambda _n: True) -> None:
        for name, pod in self.obs.pods.items():
            if names(name):
                pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}

    def converge(self, rounds: int = 20) -> None:
        """Reconcile and mark pods Running until a reconcile writes nothing."""
        for _ in range(rounds):
            p = self.reconcile()
            self.set_running()
            if not p.actions and not p.status_patch:
                return
        raise AssertionError("did not converge")


@pytest.fixture
def cluster(seed: dict[str, Any]) -> ObjectStore:
    return ObjectStore(seed)


@pytest.fixture
def make_store() -> type[ObjectStore]:
    return ObjectStore
