"""LeaderWorkerSet compatibility: an LWS (only its CRD installed) is served as a one-role ModelServing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from modelserving.executor import Kube

pytestmark = pytest.mark.cluster

LWS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "leaderworkersets.leaderworkerset.x-k8s.io"},
    "spec": {
        "group": "leaderworkerset.x-k8s.io",
        "scope": "Namespaced",
        "names": {"plural": "leaderworkersets", "singular": "leaderworkerset", "kind": "LeaderWorkerSet",
                  "shortNames": ["lws"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


@pytest.fixture
def lws_crd(ms_env: Any, controller_proc: Any) -> Iterator[Kube]:
    """The upstream LWS CRD is only needed for its API; a schemaless stand-in serves the same objects.

    The controller serves LeaderWorkerSets only if their CRD exists when it starts (the shim is
    opt-in by presence), so on a fresh cluster the session's controller is restarted once the CRD
    is served, as an operator would after installing LWS."""
    kube = Kube(ms_env.api)
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    created = True
    try:
        kube.request("create", path, body=LWS_CRD, resource="customresourcedefinitions")
    except ApiException as exc:
        if exc.status != 409:
            raise
        created = False
    ms_env.wait_until("LWS API served", lambda: _served(kube), timeout=60)
    if created:
        controller_proc.stop()
        controller_proc.start()
    yield kube


def _served(kube: Kube) -> bool:
    try:
        kube.request("list", "/apis/leaderworkerset.x-k8s.io/v1/leaderworkersets", resource="leaderworkersets")
        return True
    except ApiException:
        return False


def test_leaderworkerset_is_served_as_a_modelserving(ms_env: Any, lws_crd: Kube) -> None:
    pod = ms_env.pod_template()
    lws = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
           "metadata": {"name": "vllm", "namespace": ms_env.namespace},
           "spec": {"replicas": 2, "leaderWorkerTemplate": {"size": 2, "workerTemplate": pod}}}
    lws_crd.request("create", f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{ms_env.namespace}/leaderworkersets",
                    body=lws, resource="leaderworkersets")
    ms = ms_env.wait_until("the ModelServing", lambda: _get_ms(ms_env), timeout=120)
    assert [(r["name"], r["replicas"], r["workerReplicas"]) for r in ms["spec"]["template"]["roles"]] == [
        ("default", 1, 1)]
    assert ms["metadata"]["ownerReferences"][0]["kind"] == "LeaderWorkerSet"
    names = {"vllm-0-default-0-0", "vllm-0-default-0-1", "vllm-1-default-0-0", "vllm-1-default-0-1"}
    ms_env.wait_until("the LWS pods Running", lambda: ms_env.running(names, name="vllm"), timeout=120)
    pods = ms_env.pods("vllm")
    assert pods["vllm-1-default-0-1"]["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"] == "1"
    ms_env.wait_until("LWS status mirrored", lambda: (lws_crd.request(
        "get", f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{ms_env.namespace}/leaderworkersets/vllm",
        resource="leaderworkersets").get("status") or {}).get("readyReplicas") == 2, timeout=60)


def _get_ms(ms_env: Any) -> dict[str, Any] | None:
    try:
        return ms_env.ms("vllm")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise

