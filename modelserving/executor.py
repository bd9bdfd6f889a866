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
WRITE_CONCURRENCY = 16


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# kind -> (API prefix, plural); every path is namespaced.
RESOURCES: dict[str, tuple[str, str]] = {
    "Pod": ("/api/v1", "pods"),
    "Service": ("/api/v1", "services"),
    "PodGroup": (f"/apis/{L.PODGROUP_GROUP}/{L.PODGROUP_VERSION}", L.PODGROUP_PLURAL),
    "ControllerRevision": ("/apis/apps/v1", "controllerrevisions"),
    "ModelServing": (f"/apis/{L.GROUP}/{L.VERSION}", L.PLURAL),
}
MERGE_PATCH = "application/merge-patch+json"


@dataclass
class Kube:
    """The few API calls the controllers make: plain JSON over the kubernetes client's REST layer.

    No generated models: the objects go out as the pure core built them and come back as dicts.
    """

    api: client.ApiClient

    def __post_init__(self) -> None:
        # One connection per concurrent write; urllib3 creates host pools lazily with these kwargs.
        pool = getattr(getattr(self.api, "rest_client", None), "pool_manager", None)
        if pool is not None:
            pool.connection_pool_kw["maxsize"] = max(int(pool.connection_pool_kw.get("maxsize") or 1), WRITE_CONCURRENCY)

    def request(self, verb: str, path: str, *, body: Any = None, query: Mapping[str, str] | None = None,
                content_type: str = "application/json", resource: str = "") -> dict[str, Any]:
        API_REQUESTS.labels(verb, resource or path).inc()
        method = {"list": "GET", "get": "GET", "create": "POST", "patch": "PATCH", "delete": "DELETE",
                  "deletecollection": "DELETE"}[verb]
        _, url, headers, _, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"}, body=body,
            auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers, body=body)
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=resp.reason, body=data.decode(errors="replace") if data else None)
        return json.loads(data) if data else {}

    @staticmethod
    def path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural = RESOURCES[kind]
        out = f"{prefix}/namespaces/{namespace}/{plural}"
        if name:
            out += f"/{name}"
        if sub:
            out += f"/{sub}"
        return out

    # -- reads -------------------------------------------------------------------------------
    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        out = self.request("list", self.path(kind, namespace), query={"labelSelector": label_selector},
                           resource=RESOURCES[kind][1])
        return list(out.get("items") or [])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.request("get", self.path(kind, namespace, name), resource=RESOURCES[kind][1])

    def podgroup_support(self) -> tuple[bool, bool]:
        """(PodGroup CRD installed, its schema has spec.subGroupPolicy)."""
        try:
            crd = self.request("get", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                               f"{L.PODGROUP_PLURAL}.{L.PODGROUP_GROUP}", resource="customresourcedefinitions")
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
        return self.request("create", self.path(kind, namespace), body=dict(body), resource=RESOURCES[kind][1])

    def patch(self, kind: str, namespace: str, name: str, body: Mapping[str, Any], sub: str | None = None) -> dict[str, Any]:
        WRITES.labels(kind, "patch" if sub is None else f"patch-{sub}").inc()
        return self.request("patch", self.path(kind, namespace, name, sub), body=dict(body), content_type=MERGE_PATCH,
                            resource=RESOURCES[kind][1] + (f"/{sub}" if sub else ""))

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        WRITES.labels(kind, "delete").inc()
        opts: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            opts["preconditions"] = {"uid": uid}
        self.request("delete", self.path(kind, namespace, name), body=opts, resource=RESOURCES[kind][1])

    def delete_pods(self, namespace: str, labels: Mapping[str, str]) -> None:
        WRITES.labels("Pod", "deletecollection").inc()
        self.request("deletecollection", self.path("Pod", namespace), query={"labelSelector": selector(labels)},
                     resource="pods")

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self.patch("ModelServing", namespace, name, {"status": dict(status)}, sub="status")

    def custom(self, group: str, version: str, plural: str, namespace: str, name: str | None = None,
               sub: str | None = None) -> str:
        """The path of any namespaced custom resource (e.g. LeaderWorkerSets)."""
        out = f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        return out + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def _phase(action: WriteAction) -> int:
    """Order of execution: revisions, deletions, PodGroups, Services, pods."""
    if isinstance(action, Create) and action.kind == "ControllerRevision":
        return 0
    if isinstance(action, (Delete, DeleteMatching)):
        return 1
    if action.kind in ("PodGroup", "ControllerRevision"):
        return 2
    if action.kind == "Service":
        return 3
    return 4


async def _run(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


async def execute(kube: Kube, cache: Cache, key: Key, plan: Plan) -> int:
    """Apply the plan's writes (not its status), phase by phase, each phase concurrently.

    Phases: ControllerRevisions, deletions, PodGroups, Services, pods; a PodGroup exists before
    its pods, so Volcano never sees a gang without its group. Returns the writes that succeeded;
    the first failure is raised after the rest of its phase was tried.
    """
    namespace = key[0]
    semaphore = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def one(action: WriteAction) -> None:
        async with semaphore:
            await _apply(kube, cache, key, namespace, action)

    done = 0
    for phase in range(5):
        batch = [a for a in plan.actions if _phase(a) == phase]
        if not batch:
            continue
        results = await asyncio.gather(*(one(a) for a in batch), return_exceptions=True)
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
