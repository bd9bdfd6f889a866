"""Least privilege with `router.externalModelProviders.enabled`: the router, as the chart's
ServiceAccount behind the recording proxy, resolves a provider's labelled Secret, writes the
provider's status and proxies a request; every request is granted and every grant is used."""

from __future__ import annotations

import asyncio
import base64
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import yaml
from apirecorder import (
    ApiRecorder,
    Run,
    chart_release,
    cluster_ca,
    forbidden,
    free_port,
    run_component,
    ungranted,
    unused_grants,
    wait_until,
)
from kubernetes import client

from caldera.localcluster.session import LocalCluster
from router.providers.api import CREDENTIAL_LABEL
from router.providers.harness import ProviderServer

pytestmark = pytest.mark.cluster

CONDITIONS = frozenset({"routerExternalModelProviders"})
NETWORKING = ("networking.serving.volcano.sh", "v1alpha1")


class Provider:
    """The HTTPS provider served from its own event loop thread (the router runs as a process)."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ProviderServer(directory)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def provider_run(local_cluster: LocalCluster) -> Iterator[Run]:
    api = local_cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    with (chart_release(local_cluster, "rbacp", lambda ns: {
              "controller": {"enabled": False},
              "router": {"watchNamespace": ns, "externalModelProviders": {"enabled": True}}}) as (release, _),
          tempfile.TemporaryDirectory(prefix="caldera-rbacp-") as tmp):
        ns = release.namespace
        work = Path(tmp)
        provider = Provider(work)
        core.create_namespaced_secret(ns, {"metadata": {"name": "creds", "labels": {CREDENTIAL_LABEL: "true"}},
                                           "data": {"key": base64.b64encode(b"sk-rbac").decode()}})
        custom.create_namespaced_custom_object(*NETWORKING, ns, "externalmodelproviders", {
            "apiVersion": "/".join(NETWORKING), "kind": "ExternalModelProvider", "metadata": {"name": "hosted"},
            "spec": {"baseURL": provider.server.url, "auth": {"secretRef": {"name": "creds", "key": "key"}}}})
        custom.create_namespaced_custom_object(*NETWORKING, ns, "modelroutes", {
            "apiVersion": "/".join(NETWORKING), "kind": "ModelRoute", "metadata": {"name": "hosted"},
            "spec": {"modelName": "hosted", "rules": [{"targetModels": [{"externalModelProviderName": "hosted"}]}]}})
        config = work / "router.yaml"
        config.write_text(yaml.safe_dump({"providers": {"enabled": True, "caFile": str(provider.server.cert)}}))
        recorder = ApiRecorder(local_cluster.server, cluster_ca(local_cluster)).start()
        kubeconfig = release.kubeconfig("router", f"http://127.0.0.1:{recorder.port}", work)
        port = free_port()
        component = run_component(["router", f"--namespace={ns}", "--host=127.0.0.1", f"--port={port}",
                                   "--no-kv-events", f"--config={config}"], work / "router.log", kubeconfig)
        reached: dict[str, bool] = {}
        failure = ""

        def conditions() -> dict[str, str]:
            obj: Any = custom.get_namespaced_custom_object(*NETWORKING, ns, "externalmodelproviders", "hosted")
            return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}

        def proxied() -> bool:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=5,
                               json={"model": "hosted", "messages": [{"role": "user", "content": "hi"}]})
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        try:
            wait_until("the router to write the provider's status",
                       lambda: conditions() == {"CredentialsResolved": "True", "Ready": "True"}, 60)
            reached["status"] = True
            wait_until("a request to reach the provider", proxied, 60)
            reached["proxied"] = provider.server.received[-1].headers.get("authorization") == "Bearer sk-rbac"
        except AssertionError as exc:
            failure = str(exc)
        finally:
            component.stop()
            recorder.stop()
            provider.stop()
            api.close()
        run = Run(list(recorder.records), component.text(), reached, failure)
    yield run


def test_router_as_its_service_account_resolves_writes_status_and_proxies(provider_run: Run) -> None:
    assert provider_run.reached == {"status": True, "proxied": True}, (
        provider_run.explain())


def test_router_with_providers_is_never_forbidden(provider_run: Run) -> None:
    assert not forbidden(provider_run)
    assert "forbidden" not in provider_run.log.lower()


def test_router_with_providers_uses_only_what_the_chart_grants(provider_run: Run) -> None:
    ungranted_used = ungranted(provider_run, "router", CONDITIONS)
    assert not ungranted_used, ungranted_used


def test_router_with_providers_uses_everything_the_chart_grants(provider_run: Run) -> None:
    unused = unused_grants(provider_run, "router", CONDITIONS)
    assert not unused, f"the chart grants what the router never used: {sorted(unused)}"


def test_router_reads_secrets_only_with_the_credential_label_selector(provider_run: Run) -> None:
    secret_reads = [r for r in provider_run.records if "/secrets" in r.path]
    selectors = {tuple(parse_qs(r.query).get("labelSelector", [])) for r in secret_reads}
    assert selectors == {(f"{CREDENTIAL_LABEL}=true",)}, selectors
