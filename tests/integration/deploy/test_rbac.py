"""Least privilege, proven on the API server: the controller and the router run under the
chart's ServiceAccounts (TokenRequest tokens, not admin) behind a recording proxy. A request
the chart does not grant shows up as a 403; a grant no request used shows up as unused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apirecorder import (
    ApiRecorder,
    Component,
    Grant,
    Record,
    Release,
    Run,
    cluster_ca,
    forbidden,
    free_port,
    rare_grants,
    request_grant,
    requests_as_grants,
    run_component,
    ungranted,
    unused_grants,
    wait_until,
)
from kubernetes import client

from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster

# The chart values of rbac_release: default webhooks, controller.watchNamespaces set.
CONTROLLER_CONDITIONS = frozenset({"controllerManagedWebhooks", "controllerWatchesNamespaces"})


def modelserving(name: str, replicas: int, image: str = "example.com/noop:1") -> dict[str, Any]:
    container = {"name": "engine", "image": image, "resources": {"requests": {"cpu": "100m"}}}
    return {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "ModelServing",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "schedulerName": "volcano", "template": {"roles": [{
            "name": "server", "replicas": 1, "workerReplicas": 1,
            "entryTemplate": {"spec": {"containers": [container]}},
            "workerTemplate": {"spec": {"containers": [container]}},
        }]}},
    }


def count_pods(api: client.ApiClient, namespace: str, name: str) -> int:
    return len(client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"modelserving.volcano.sh/name={name}").items)


@pytest.fixture(scope="module")
def controller_run(local_cluster: LocalCluster, rbac_release: Release, work_dir: Path) -> Iterator[Run]:
    """The controller as its ServiceAccount: create, scale up, scale down, roll out and delete a ModelServing."""
    recorder = ApiRecorder(local_cluster.server, cluster_ca(local_cluster)).start()
    ns = rbac_release.namespace
    kubeconfig = rbac_release.kubeconfig("controller", f"http://127.0.0.1:{recorder.port}", work_dir)
    metrics, webhook = free_port(), free_port()
    component: Component = run_component([
        "controller", f"--namespace={ns}", f"--peering={rbac_release.name}-caldera", "--no-leader-worker-set",
        f"--metrics-port={metrics}", f"--health-port={free_port()}", f"--webhook-port={webhook}",
        f"--tls-dir={work_dir / 'webhook-tls'}"], work_dir / "controller.log", kubeconfig)
    api = local_cluster.api_client()
    custom = client.CustomObjectsApi(api)
    group, version, plural = "workload.serving.volcano.sh", "v1alpha1", "modelservings"
    reached: dict[str, bool] = {}

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{metrics}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    failure = ""
    try:
        wait_until("the controller to be ready", lambda: component.process.poll() is None and ready(), 90)
        reached["ready"] = True
        custom.create_namespaced_custom_object(group, version, ns, plural, modelserving("rbac", 1))
        wait_until("the controller to create 2 pods", lambda: count_pods(api, ns, "rbac") == 2, 90)
        reached["created"] = True
        # The autoscaler raises replicas to the binding's minimum through the scale subresource.
        custom.create_namespaced_custom_object(group, version, ns, "autoscalingpolicies", {
            "apiVersion": f"{group}/{version}", "kind": "AutoscalingPolicy", "metadata": {"name": "rbac"},
            "spec": {"metrics": [{"metricName": "vllm:num_requests_waiting", "targetValue": "4"}]}})
        custom.create_namespaced_custom_object(group, version, ns, "autoscalingpolicybindings", {
            "apiVersion": f"{group}/{version}", "kind": "AutoscalingPolicyBinding", "metadata": {"name": "rbac"},
            "spec": {"policyRef": {"name": "rbac"}, "homogeneousTarget": {
                "target": {"targetRef": {"kind": "ModelServing", "name": "rbac"}},
                "minReplicas": 2, "maxReplicas": 2}}})
        wait_until("the autoscaler to scale to 4 pods", lambda: count_pods(api, ns, "rbac") == 4, 120)
        reached["autoscaled"] = True
        custom.delete_namespaced_custom_object(group, version, ns, "autoscalingpolicybindings", "rbac")
        custom.patch_namespaced_custom_object(group, version, ns, plural, "rbac", {"spec": {"replicas": 1}})
        wait_until("the controller to scale back to 2 pods", lambda: count_pods(api, ns, "rbac") == 2, 90)
        reached["scaled"] = True
        custom.patch_namespaced_custom_object(group, version, ns, plural, "rbac", modelserving(
            "rbac", 1, image="example.com/noop:2"))
        wait_until("the rollout to replace the pods", lambda: {
            c.image for p in client.CoreV1Api(api).list_namespaced_pod(
                ns, label_selector="modelserving.volcano.sh/name=rbac").items for c in p.spec.containers
        } == {"example.com/noop:2"}, 120)
        reached["rolled-out"] = True
        custom.delete_namespaced_custom_object(group, version, ns, plural, "rbac")
        wait_until("the ModelServing to be gone", lambda: not custom.list_namespaced_custom_object(
            group, version, ns, plural)["items"], 60)
        reached["deleted"] = True
    except AssertionError as exc:
        failure = str(exc)
    finally:
        component.stop()
        recorder.stop()
        remove_stale_webhooks(api, webhook)
        api.close()
    yield Run(list(recorder.records), component.text(), reached, failure)


def remove_stale_webhooks(api: client.ApiClient, port: int) -> None:
    """Drop webhook configurations still pointing at our (stopped) controller, so a controller
    that could not clean up never leaves the cluster rejecting ModelServings."""
    admission = client.AdmissionregistrationV1Api(api)
    pairs: list[tuple[Any, Any]] = [
        (admission.list_validating_webhook_configuration, admission.delete_validating_webhook_configuration),
        (admission.list_mutating_webhook_configuration, admission.delete_mutating_webhook_configuration)]
    for lister, deleter in pairs:
        for config in lister().items:
            urls = [hook.client_config.url or "" for hook in config.webhooks or []]
            if any(f":{port}/" in url for url in urls):
                deleter(config.metadata.name)


def test_controller_as_its_service_account_reconciles_the_whole_lifecycle(controller_run: Run) -> None:
    assert controller_run.reached == {"ready": True, "created": True, "autoscaled": True, "scaled": True,
                                      "rolled-out": True, "deleted": True}, controller_run.explain()


def test_controller_as_its_service_account_is_never_forbidden(controller_run: Run) -> None:
    assert not forbidden(controller_run), "the chart does not grant what the controller needs"
    assert "forbidden" not in controller_run.log.lower()


def test_controller_uses_only_what_the_chart_grants(controller_run: Run) -> None:
    ungranted_used = ungranted(controller_run, "controller", CONTROLLER_CONDITIONS)
    assert not ungranted_used, ungranted_used


def test_controller_uses_everything_the_chart_grants_but_its_declared_rare_verbs(controller_run: Run) -> None:
    unused = unused_grants(controller_run, "controller", CONTROLLER_CONDITIONS) - rare_grants("controller")
    assert not unused, f"the chart grants what the controller never used: {sorted(unused)}"


def test_the_recording_proxy_saw_the_controller_talk_to_the_api_server(controller_run: Run) -> None:
    assert {g for g in requests_as_grants(controller_run.records) if g[2] == "watch"}


@pytest.mark.parametrize(("method", "path", "query", "grant"), [
    ("GET", "/api/v1/namespaces/a/pods", "watch=true", ("", "pods", "watch")),
    ("GET", "/api/v1/namespaces/a/pods/p", "", ("", "pods", "get")),
    ("PATCH", "/apis/workload.serving.volcano.sh/v1alpha1/namespaces/a/modelservings/m/status", "",
     ("workload.serving.volcano.sh", "modelservings/status", "patch")),
    ("GET", "/apis/topology.volcano.sh/v1alpha1/hypernodes", "", ("topology.volcano.sh", "hypernodes", "list")),
    ("POST", "/api/v1/namespaces/a/events", "", ("", "events", "create")),
    ("DELETE", "/api/v1/namespaces/a/services/s", "", ("", "services", "delete")),
    ("GET", "/apis/apps/v1", "", None),
])
def test_requests_map_to_the_rbac_grant_they_need(method: str, path: str, query: str, grant: Grant | None) -> None:
    assert request_grant(Record(method, path, query, 200)) == grant


@pytest.fixture(scope="module")
def router_run(local_cluster: LocalCluster, rbac_release: Release, work_dir: Path) -> Iterator[Run]:
    """The router as its ServiceAccount: discover a ModelRoute, its ModelServer and a Ready pod."""
    ns = rbac_release.namespace
    api = local_cluster.api_client()
    custom = client.CustomObjectsApi(api)
    networking = ("networking.serving.volcano.sh", "v1alpha1")
    custom.create_namespaced_custom_object(*networking, ns, "modelservers", {
        "apiVersion": "/".join(networking), "kind": "ModelServer", "metadata": {"name": "rbac"},
        "spec": {"model": "m", "inferenceEngine": "vLLM", "workloadPort": {"port": 8000},
                 "workloadSelector": {"matchLabels": {"app": "rbac-engine"}}}})
    custom.create_namespaced_custom_object(*networking, ns, "modelroutes", {
        "apiVersion": "/".join(networking), "kind": "ModelRoute", "metadata": {"name": "rbac"},
        "spec": {"modelName": "rbac-model", "rules": [{"name": "all", "targetModels": [{"modelServerName": "rbac"}]}]}})
    client.CoreV1Api(api).create_namespaced_pod(ns, {
        "metadata": {"name": "rbac-engine", "labels": {"app": "rbac-engine"}},
        "spec": {"schedulerName": "volcano", "containers": [{"name": "engine", "image": "example.com/noop:1",
                                                             "ports": [{"containerPort": 8000}]}]}})
    recorder = ApiRecorder(local_cluster.server, cluster_ca(local_cluster)).start()
    kubeconfig = rbac_release.kubeconfig("router", f"http://127.0.0.1:{recorder.port}", work_dir)
    port = free_port()
    component = run_component(["router", f"--namespace={ns}", "--host=127.0.0.1", f"--port={port}",
                               "--no-kv-events"], work_dir / "router.log", kubeconfig)
    reached: dict[str, bool] = {}

    def state() -> dict[str, Any]:
        try:
            return dict(httpx.get(f"http://127.0.0.1:{port}/debug/state", timeout=2).json())
        except (httpx.HTTPError, ValueError):
            return {}

    failure = ""
    try:
        wait_until("the router to be ready", lambda: component.process.poll() is None and _ready(port), 60)
        reached["ready"] = True
        wait_until("the router to discover the route and the pod", lambda: bool(
            [r for r in state().get("routes", []) if r.get("modelName") == "rbac-model"]
            and state().get("endpoints")), 60)
        reached["discovered"] = True
    except AssertionError as exc:
        failure = str(exc)
    finally:
        component.stop()
        recorder.stop()
        api.close()
    yield Run(list(recorder.records), component.text(), reached, failure)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_router_as_its_service_account_discovers_routes_servers_and_pods(router_run: Run) -> None:
    assert router_run.reached == {"ready": True, "discovered": True}, router_run.explain()


def test_router_as_its_service_account_is_never_forbidden(router_run: Run) -> None:
    assert not forbidden(router_run), "the chart does not grant what the router needs"
    assert "forbidden" not in router_run.log.lower()


def test_router_uses_only_what_the_chart_grants(router_run: Run) -> None:
    ungranted_used = ungranted(router_run, "router")
    assert not ungranted_used, ungranted_used


def test_router_uses_everything_the_chart_grants(router_run: Run) -> None:
    unused = unused_grants(router_run, "router")
    assert not unused, f"the chart grants what the router never used: {sorted(unused)}"
