"""Carries out a reconcile plan against the Kubernetes API and feeds the results to the cache.

Every write is idempotent: creates treat AlreadyExists as done (and read the object back),
deletes treat NotFound as done, pod deletions carry a UID precondition. Requests are plain
JSON (no model round-trips) and counted in `caldera_controller_api_requests_total`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelserving import labels as L
from modelserving.cache import Cache, Key
from modelserving.metrics import API_REQUESTS, WRITES
from modelserving.plan import Create, Delete, DeleteMatching, Patch, Plan, WriteAction

log = logging.getLogger("caldera.modelserving")
T = TypeVar("T")
POD_CREATE_CONCURRENCY = 16


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass
class Kube:
    """The few API calls the ModelServing controller makes, as JSON in and out."""

    api: client.ApiClient

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)

    @staticmethod
    def _json(resp: Any) -> dict[str, Any]:
        data = resp.data if hasattr(resp, "data") else resp
        return json.loads(data) if data else {}

    def call(self, verb: str, resource: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> dict[str, Any]:
        API_REQUESTS.labels(verb, resource).inc()
        return self._json(fn(*args, _preload_content=False, **kw))

    # -- reads -------------------------------------------------------------------------------
    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        if kind == "Pod":
            out = self.call("list", "pods", self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        elif kind == "Service":
            out = self.call("list", "services", self.core.list_namespaced_service, namespace,
                            label_selector=label_selector)
        elif kind == "PodGroup":
            out = self.call("list", "podgroups", self.custom.list_namespaced_custom_object, L.PODGROUP_GROUP,
                            L.PODGROUP_VERSION, namespace, L.PODGROUP_PLURAL, label_selector=label_selector)
        else:
            out = self.call("list", "controllerrevisions", self.apps.list_namespaced_controller_revision, namespace,
                            label_selector=label_selector)
        return list(out.get("items") or [])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if kind == "Pod":
            return self.call("get", "pods", self.core.read_namespaced_pod, name, namespace)
        if kind == "Service":
            return self.call("get", "services", self.core.read_namespaced_service, name, namespace)
        if kind == "PodGroup":
            return self.call("get", "podgroups", self.custom.get_namespaced_custom_object, L.PODGROUP_GROUP,
                             L.PODGROUP_VERSION, namespace, L.PODGROUP_PLURAL, name)
        return self.call("get", "controllerrevisions", self.apps.read_namespaced_controller_revision, name, namespace)

    def podgroup_support(self) -> tuple[bool, bool]:
        """(PodGroup CRD installed, its schema has spec.subGroupPolicy)."""
        try:
            crd = self.call("get", "customresourcedefinitions", self.ext.read_custom_resource_definition,
                            f"{L.PODGROUP_PLURAL}.{L.PODGROUP_GROUP}")
        except ApiException as exc:
            if exc.status == 404:
                return False, False
            raise
        for version in (crd.get("spec") or {}).get("versions") or []:
            props = ((((version.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {})
                     .get("spec") or {}).get("properties") or {}
            if "subGroupPolicy" in props:
                return True, True
        return True, False

    # -- writes ------------------------------------------------------------------------------
    def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        WRITES.labels(kind, "create").inc()
        if kind == "Pod":
            return self.call("create", "pods", self.core.create_namespaced_pod, namespace, body)
        if kind == "Service":
            return self.call("create", "services", self.core.create_namespaced_service, namespace, body)
        if kind == "PodGroup":
            return self.call("create", "podgroups", self.custom.create_namespaced_custom_object, L.PODGROUP_GROUP,
                             L.PODGROUP_VERSION, namespace, L.PODGROUP_PLURAL, body)
        return self.call("create", "controllerrevisions", self.apps.create_namespaced_controller_revision,
                         namespace, body)

    def patch(self, kind: str, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        WRITES.labels(kind, "patch").inc()
        if kind == "Service":
            return self.call("patch", "services", self.core.patch_namespaced_service, name, namespace, body)
        if kind == "PodGroup":
            return self.call("patch", "podgroups", self.custom.patch_namespaced_custom_object, L.PODGROUP_GROUP,
                             L.PODGROUP_VERSION, namespace, L.PODGROUP_PLURAL, name, body)
        raise ValueError(f"the controller never patches {kind} objects")

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        WRITES.labels(kind, "delete").inc()
        opts: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            opts["preconditions"] = {"uid": uid}
        if kind == "Pod":
            self.call("delete", "pods", self.core.delete_namespaced_pod, name, namespace, body=opts)
        elif kind == "Service":
            self.call("delete", "services", self.core.delete_namespaced_service, name, namespace, body=opts)
        elif kind == "PodGroup":
            self.call("delete", "podgroups", self.custom.delete_namespaced_custom_object, L.PODGROUP_GROUP,
                      L.PODGROUP_VERSION, namespace, L.PODGROUP_PLURAL, name, body=opts)
        else:
            self.call("delete", "controllerrevisions", self.apps.delete_namespaced_controller_revision, name,
                      namespace, body=opts)

    def delete_pods(self, namespace: str, labels: Mapping[str, str]) -> None:
        WRITES.labels("Pod", "deletecollection").inc()
        self.call("deletecollection", "pods", self.core.delete_collection_namespaced_pod, namespace,
                  label_selector=selector(labels))

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        WRITES.labels("ModelServing", "patch-status").inc()
        return self.call("patch", "modelservings/status", self.custom.patch_namespaced_custom_object_status,
                         L.GROUP, L.VERSION, namespace, L.PLURAL, name, {"status": dict(status)})


def _phase(action: WriteAction) -> int:
    """Order of execution: revisions, deletions, PodGroups, Services, pods."""
    if isinstance(action, Create) and action.kind == "ControllerRevision":
        return 0
    if isinstance(action, (Delete, DeleteMatching)):
        return 1
    if action.kind == "PodGroup":
        return 2
    if action.kind == "Service":
        return 3
    return 4


async def _run(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


async def execute(kube: Kube, cache: Cache, key: Key, plan: Plan) -> int:
    """Apply the plan's writes (not its status); returns how many succeeded."""
    namespace = key[0]
    done = 0
    ordered = sorted(plan.actions, key=_phase)
    pods = [a for a in ordered if isinstance(a, Create) and a.kind == "Pod"]
    others = [a for a in ordered if not (isinstance(a, Create) and a.kind == "Pod")]
    for action in others:
        await _apply(kube, cache, key, namespace, action)
        done += 1
    semaphore = asyncio.Semaphore(POD_CREATE_CONCURRENCY)

    async def create_pod(action: Create) -> None:
        async with semaphore:
            await _apply(kube, cache, key, namespace, action)

    # Pods of one gang are created together; a failure surfaces after the rest are tried.
    results = await asyncio.gather(*(create_pod(a) for a in pods), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    done += len(results) - len(errors)
    if errors:
        raise errors[0]
    return done


async def _apply(kube: Kube, cache: Cache, key: Key, namespace: str, action: WriteAction) -> None:
    if isinstance(action, Create):
        try:
            obj = await _run(kube.create, action.kind, namespace, action.body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            obj = await _run(kube.get, action.kind, namespace, action.body["metadata"]["name"])
        cache.observe(action.kind, "ADDED", obj)
    elif isinstance(action, Patch):
        obj = await _run(kube.patch, action.kind, namespace, action.name, action.patch)
        cache.observe(action.kind, "MODIFIED", obj)
    elif isinstance(action, DeleteMatching):
        await _run(kube.delete_pods, namespace, action.labels)
        cache.mark_deleted(key, action.labels)
    elif isinstance(action, Delete):
        try:
            await _run(kube.delete, action.kind, namespace, action.name, action.uid)
        except ApiException as exc:
            if exc.status == 409 and action.uid:  # the precondition failed: a namesake replaced it
                return
            if exc.status != 404:
                raise
        if action.kind == "Pod" and action.uid:
            cache.mark_pod_deleted(key, action.uid)
        elif action.kind != "Pod":
            cache.entry(key).objects[action.kind].pop(action.name, None)
