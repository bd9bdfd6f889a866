"""The guard on the provider-only paths /v1/messages and /v1/responses: drain, the admission
bound and authentication apply before the body is read, as on the engine paths. The router
runs in front of a real HTTPS provider (router.providers.harness) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from router.harness import RunningRouter, wait_until
from router.providers.api import CREDENTIAL_LABEL
from router.providers.harness import ProviderServer

NS = "default"
PROVIDER_PATHS = ("/v1/messages", "/v1/responses")
BODY = {"model": "hosted", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def provider_config(server: ProviderServer, **extra: Any) -> dict[str, Any]:
    """Model `hosted` routed to an Anthropic provider (it serves /v1/messages)."""
    return {
        "modelRoutes": [{"metadata": {"name": "hosted", "namespace": NS},
                         "spec": {"modelName": "hosted",
                                  "rules": [{"targetModels": [{"externalModelProviderName": "ext"}]}]}}],
        "externalModelProviders": [{"metadata": {"name": "ext", "namespace": NS},
                                    "spec": {"baseURL": server.url, "providerType": "Anthropic",
                                             "auth": {"secretRef": {"name": "creds", "key": "token"}}}}],
        "secrets": [{"metadata": {"name": "creds", "namespace": NS, "labels": {CREDENTIAL_LABEL: "true"}},
                     "data": {"token": base64.b64encode(b"sk-provider").decode()}}],
        "providers": {"caFile": str(server.cert)},
        **extra,
    }


async def post(router: RunningRouter, path: str, headers: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with await router.post(path, BODY, headers) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


class HeldRequest:
    """A request whose body the client withholds: admitted by the guard (headers are in), it
    stays in flight until `release`, as a slow upload does."""

    def __init__(self, router: RunningRouter, path: str) -> None:
        self.release_body = asyncio.Event()
        payload = json.dumps(BODY).encode()

        async def body() -> AsyncIterator[bytes]:
            yield payload[:1]  # the headers go out with the first chunk
            await self.release_body.wait()
            yield payload[1:]

        self.task = asyncio.create_task(self._send(router, path, body()))

    @staticmethod
    async def _send(router: RunningRouter, path: str, body: AsyncIterator[bytes]) -> int:
        async with router.session.post(router.url + path, data=body,
                                       headers={"content-type": "application/json"}) as r:
            await r.read()
            return r.status

    async def release(self) -> int:
        self.release_body.set()
        return await self.task


@contextlib.asynccontextmanager
async def held(router: RunningRouter, path: str) -> AsyncIterator[HeldRequest]:
    """One request in flight on `path` (the guard counts it) for the duration of the block."""
    request = HeldRequest(router, path)
    try:
        await wait_until(lambda: router.router.guard.held == 1, timeout=10)
        yield request
    finally:
        request.release_body.set()
        with contextlib.suppress(aiohttp.ClientError):
            await request.task


@pytest.mark.parametrize("path", PROVIDER_PATHS)
async def test_draining_router_refuses_provider_paths_before_the_provider(
        guarded_router: Callable[..., Any], provider: ProviderServer, path: str) -> None:
    router: RunningRouter = await guarded_router(**provider_config(provider))
    router.router.guard.begin_drain()
    status, body, headers = await post(router, path)
    assert (status, body["error"]["code"], "Retry-After" in headers, provider.received) == (503, "draining", True, [])


@pytest.mark.parametrize("path", PROVIDER_PATHS)
async def test_in_flight_provider_request_counts_toward_max_concurrent_requests(
        guarded_router: Callable[..., Any], provider: ProviderServer, path: str) -> None:
    router: RunningRouter = await guarded_router(**provider_config(provider, resilience={"maxConcurrentRequests": 1}))
    async with held(router, path):
        status, body, _ = await post(router, "/v1/messages")
    assert (status, body["error"]["code"]) == (503, "admission")


@pytest.mark.parametrize("path", PROVIDER_PATHS)
async def test_provider_path_beyond_max_concurrent_requests_is_refused(
        guarded_router: Callable[..., Any], provider: ProviderServer, path: str) -> None:
    router: RunningRouter = await guarded_router(**provider_config(provider, resilience={"maxConcurrentRequests": 1}))
    async with held(router, "/v1/messages"):
        status, body, _ = await post(router, path)
    assert (status, body["error"]["code"], len(provider.received)) == (503, "admission", 1)


async def test_released_provider_request_frees_its_admission_slot(
        guarded_router: Callable[..., Any], provider: ProviderServer) -> None:
    router: RunningRouter = await guarded_router(**provider_config(provider, resilience={"maxConcurrentRequests": 1}))
    async with held(router, "/v1/messages") as request:
        first = await request.release()
    status, _, _ = await post(router, "/v1/messages")
    assert (first, status, router.router.guard.held) == (200, 200, 0)


@pytest.mark.parametrize("path", PROVIDER_PATHS)
async def test_unauthenticated_provider_path_is_refused_by_the_guard(
        guarded_router: Callable[..., Any], provider: ProviderServer, path: str) -> None:
    router: RunningRouter = await guarded_router(**provider_config(
        provider, auth={"apiKeys": [{"key": "sk-alice-000", "user": "alice"}]}))
    status, body, headers = await post(router, path)
    refused = router.router.guard.metrics.rejections.labels("unauthorized", "401")._value.get()
    assert (status, body["error"]["code"], headers.get("WWW-Authenticate"), refused, provider.received) == (
        401, "unauthorized", 'Bearer realm="caldera"', 1, [])
