"""Cluster mode: the router discovers ModelRoutes, ModelServers and engine pods from the API server."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client

from caldera.localcluster.session import LocalCluster
from router.api import GROUP, VERSION
from router.config import RouterConfig
from router.discovery import Discovery
from router.harness import free_port, wait_until
from router.server import Router

pytestmark = pytest.mark.cluster


def engine_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "sim"}},
        "spec": {"schedulerName": "volcano", "containers": [{
            "name": "engine", "image": "caldera/enginesim:latest",
            "args": ["--model", "sim-8b", "--time-scale", "20",
                     "--kv-events-config", '{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557"}'],
            "ports": [{"containerPort": 8000}], "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }


MODEL_SERVER = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServer", "metadata": {"name": "sim"},
                "spec": {"model": "sim-8b", "inferenceEngine": "vLLM", "workloadPort": {"port": 8000},
                         "workloadSelector": {"matchLabels": {"app": "sim"}}}}
MODEL_ROUTE = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRoute", "metadata": {"name": "chat"},
               "spec": {"modelName": "chat", "rules": [{"targetModels": [{"modelServerName": "sim"}]}]}}


async def test_router_serves_pods_selected_by_a_model_server(local_cluster: LocalCluster,
                                                             cluster_namespace: str) -> None:
    api = local_cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, cluster_namespace, "modelservers", MODEL_SERVER)
    custom.create_namespaced_custom_object(GROUP, VERSION, cluster_namespace, "modelroutes", MODEL_ROUTE)
    for name in ("engine-0", "engine-1"):
        core.create_namespaced_pod(cluster_namespace, engine_pod(name))

    config = RouterConfig.model_validate({"port": free_port(), "metricsInterval": 0.2})
    router = Router(config)
    discovery = Discovery(router.state, kubeconfig=str(local_cluster.kubeconfig), namespace=cluster_namespace,
                          on_synced=lambda: setattr(router, "ready", True))
    runner = web.AppRunner(router.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    await discovery.start()
    url = f"http://127.0.0.1:{config.port}"
    try:
        await wait_until(lambda: len(router.state.members.get(f"{cluster_namespace}/sim", [])) == 2, timeout=120)
        await wait_until(lambda: all(e.healthy and e.metrics.scraped_at > 0
                                     for e in router.state.endpoints.values()), timeout=60)
        assert all(e.kv_events and e.kv_events.endswith(":5557") for e in router.state.endpoints.values())
        async with aiohttp.ClientSession() as s:
            pods = set()
            for i in range(6):
                async with s.post(url + "/v1/completions",
                                  json={"model": "chat", "prompt": f"hello {i}", "max_tokens": 2}) as r:
                    body = await r.json()
                    assert r.status == 200 and body["model"] == "sim-8b"
                    pods.add(r.headers["x-caldera-pod"])
            assert pods <= {f"{cluster_namespace}/engine-0", f"{cluster_namespace}/engine-1"}
        core.delete_namespaced_pod("engine-1", cluster_namespace, grace_period_seconds=0)
        await wait_until(lambda: router.state.members.get(f"{cluster_namespace}/sim")
                         == [f"{cluster_namespace}/engine-0"], timeout=60)
    finally:
        await discovery.stop()
        await runner.cleanup()
        api.close()
