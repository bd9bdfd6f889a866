"""Cluster mode with ExternalModelProviders: the router watches providers and their labelled
credential Secrets on the API server, writes the providers' status, and proxies to a real
HTTPS provider (self-signed, on 127.0.0.1) with the credential injected."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.localcluster.session import LocalCluster
from router.api import GROUP, VERSION
from router.config import RouterConfig
from router.discovery import Discovery
from router.harness import free_port, wait_until
from router.providers.api import CREDENTIAL_LABEL
from router.providers.harness import ProviderServer
from router.server import Router

pytestmark = pytest.mark.cluster

TOKEN = "sk-cluster-42"
PLURAL = "externalmodelproviders"


def provider_object(url: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ExternalModelProvider", "metadata": {"name": "hosted"},
            "spec": {"baseURL": url, "model": "gpt-4o-mini",
                     "auth": {"secretRef": {"name": "hosted-creds", "key": "apiKey"}}, **spec}}


SECRET = {"apiVersion": "v1", "kind": "Secret",
          "metadata": {"name": "hosted-creds", "labels": {CREDENTIAL_LABEL: "true"}},
          "data": {"apiKey": base64.b64encode(TOKEN.encode()).decode()}}
ROUTE = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRoute", "metadata": {"name": "hosted"},
         "spec": {"modelName": "hosted-chat", "rules": [{"targetModels": [{"externalModelProviderName": "hosted"}]}]}}
CHAT = {"model": "hosted-chat", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Setup:
    provider: ProviderServer
    router: Router
    url: str
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    namespace: str

    def conditions(self) -> dict[str, tuple[str, str]]:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, "hosted")
        return {c["type"]: (c["status"], c["reason"]) for c in (obj.get("status") or {}).get("conditions") or []}

    async def chat(self) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.post(self.url + "/v1/chat/completions", json=CHAT) as r:
            return r.status, await r.json(content_type=None)


@pytest.fixture
async def setup(local_cluster: LocalCluster, cluster_namespace: str, tmp_path: Path) -> AsyncIterator[Setup]:
    provider = await ProviderServer(tmp_path).start()
    api = local_cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespaced_secret(cluster_namespace, SECRET)
    custom.create_namespaced_custom_object(GROUP, VERSION, cluster_namespace, PLURAL, provider_object(provider.url))
    custom.create_namespaced_custom_object(GROUP, VERSION, cluster_namespace, "modelroutes", ROUTE)
    config = RouterConfig.model_validate({"port": free_port(), "kvEvents": False,
                                          "providers": {"enabled": True, "caFile": str(provider.cert)}})
    router = Router(config)
    discovery = Discovery(router.state, kubeconfig=str(local_cluster.kubeconfig), namespace=cluster_namespace,
                          on_synced=lambda: setattr(router, "ready", True))
    discovery.watch_providers = True
    runner = web.AppRunner(router.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    await discovery.start()
    try:
        yield Setup(provider, router, f"http://127.0.0.1:{config.port}", core, custom, cluster_namespace)
    finally:
        await discovery.stop()
        await runner.cleanup()
        await provider.stop()
        api.close()


async def test_router_proxies_to_the_provider_with_the_secret_credential(setup: Setup) -> None:
    key = f"{setup.namespace}/hosted"
    await wait_until(lambda: (p := setup.router.state.table.providers.get(key)) is not None and p.ready, timeout=60)
    status, body = await setup.chat()
    assert (status, body["model"]) == (200, "gpt-4o-mini")
    assert setup.provider.received[-1].headers["authorization"] == f"Bearer {TOKEN}"


async def test_router_writes_ready_and_credentials_resolved_conditions(setup: Setup) -> None:
    await wait_until(lambda: setup.conditions() == {"CredentialsResolved": ("True", "CredentialResolved"),
                                                    "Ready": ("True", "Ready")}, timeout=60)


async def test_removing_the_credential_label_makes_the_provider_unready(setup: Setup) -> None:
    await wait_until(lambda: setup.conditions().get("Ready") == ("True", "Ready"), timeout=60)
    setup.core.patch_namespaced_secret("hosted-creds", setup.namespace,
                                       {"metadata": {"labels": {CREDENTIAL_LABEL: None}}})
    await wait_until(lambda: setup.conditions().get("CredentialsResolved") == ("False", "CredentialNotFound"),
                     timeout=60)
    status, body = await setup.chat()
    assert (status, body["error"]["code"]) == (503, "provider_not_ready")


async def test_the_api_server_rejects_a_plain_http_base_url(local_cluster: LocalCluster,
                                                             cluster_namespace: str) -> None:
    api = local_cluster.api_client()
    try:
        with pytest.raises(ApiException) as info:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, cluster_namespace, PLURAL, provider_object("http://api.example.com"))
        assert info.value.status == 422 and "spec.baseURL" in str(info.value.body)
    finally:
        api.close()
