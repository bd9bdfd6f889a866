"""The API calls the autoscaler makes, as plain JSON over the kubernetes client's REST layer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscaler.api import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# kind -> (API prefix, plural) of the targets that can be scaled.
SCALABLE: dict[str, tuple[str, str]] = {
    "ModelServing": (f"/apis/{GROUP}/{VERSION}", "modelservings"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
}
POLICIES = f"/apis/{GROUP}/{VERSION}"
VOLCANO = "/apis/scheduling.volcano.sh/v1beta1"


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass
class Kube:
    api: client.ApiClient

    def request(self, method: str, path: str, *, body: Any = None, query: Mapping[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        _, url, headers, _, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"}, body=body,
            auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers, body=body)
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=resp.reason,
                               body=data.decode(errors="replace") if data else None)
        return json.loads(data) if data else {}

    def target_path(self, kind: str, namespace: str, name: str, sub: str | None = None) -> str:
        if kind not in SCALABLE:
            raise ValueError(f"targetRef.kind {kind!r} is not scalable here; want one of {sorted(SCALABLE)}")
        prefix, plural = SCALABLE[kind]
        return f"{prefix}/namespaces/{namespace}/{plural}/{name}" + (f"/{sub}" if sub else "")

    def get_target(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.request("GET", self.target_path(kind, namespace, name))

    def get_policy(self, namespace: str, name: str) -> dict[str, Any]:
        return self.request("GET", f"{POLICIES}/namespaces/{namespace}/autoscalingpolicies/{name}")

    def pods(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        out = self.request("GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": selector(labels)})
        return list(out.get("items") or [])

    def all_pods(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/pods").get("items") or [])

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/nodes").get("items") or [])

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def queue(self, name: str) -> dict[str, Any] | None:
        """A Volcano Queue (cluster-scoped); None when it (or Volcano's Queue API) does not exist."""
        try:
            return self.request("GET", f"{VOLCANO}/queues/{name}")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def podgroups(self, namespace: str) -> list[dict[str, Any]]:
        return self._list_optional(f"{VOLCANO}/namespaces/{namespace}/podgroups")

    def _list_optional(self, path: str) -> list[dict[str, Any]]:
        try:
            return list(self.request("GET", path).get("items") or [])
        except ApiException as exc:
            if exc.status == 404:  # the API (e.g. KEDA) is not installed
                return []
            raise

    def external_autoscalers(self, namespace: str, kind: str, name: str) -> list[str]:
        """HPAs and KEDA ScaledObjects that scale the same object."""
        found = []
        for hpa in self._list_optional(f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"):
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") == kind and ref.get("name") == name:
                found.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}")
        for so in self._list_optional(f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects"):
            ref = (so.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind", "Deployment") == kind and ref.get("name") == name:
                found.append(f"ScaledObject/{so['metadata']['name']}")
        return found

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """`spec.replicas` through the scale subresource (ModelServing and apps kinds have it)."""
        self.request("PATCH", self.target_path(kind, namespace, name, "scale"),
                     body={"spec": {"replicas": replicas}}, content_type=MERGE_PATCH)

    def scale_role(self, namespace: str, name: str, index: int, role: str, replicas: int) -> None:
        """One role's replicas, guarded by a test that the index still names that role."""
        base = f"/spec/template/roles/{index}"
        self.request("PATCH", self.target_path("ModelServing", namespace, name),
                     body=[{"op": "test", "path": f"{base}/name", "value": role},
                           {"op": "replace", "path": f"{base}/replicas", "value": replicas}],
                     content_type=JSON_PATCH)
