"""Fixtures for the router's end-to-end tests: real enginesim processes, in-process routers,
router processes, a private redis-server and an HTTPS model provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from router.config import RouterConfig
from router.harness import Engines, RunningRouter, free_port
from router.providers.harness import ProviderServer
from router.resilience.harness import RedisServer, RouterProcess, start_redis, start_router_process
from router.server import Router


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[Engines]:
    e = Engines(tmp_path)
    try:
        yield e
    finally:
        e.stop()


@asynccontextmanager
async def _in_process_routers(
    handler_cancellation: bool, defaults: dict[str, Any]
) -> AsyncIterator[Callable[..., Any]]:
    runners: list[tuple[web.AppRunner, aiohttp.ClientSession]] = []

    async def start(**cfg: Any) -> RunningRouter:
        cfg.setdefault("port", free_port())
        cfg.setdefault("metricsInterval", 0.05)
        for key, value in defaults.items():
            cfg.setdefault(key, value)
        config = RouterConfig.model_validate(cfg)
        router = Router(config)
        router.load_static()
        runner = web.AppRunner(router.app, handler_cancellation=handler_cancellation)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", config.port).start()
        session = aiohttp.ClientSession()
        runners.append((runner, session))
        return RunningRouter(router=router, url=f"http://127.0.0.1:{config.port}", session=session)

    try:
        yield start
    finally:
        for runner, session in runners:
            await session.close()
            await runner.cleanup()


@pytest.fixture
async def start_router() -> AsyncIterator[Callable[..., Any]]:
    async with _in_process_routers(handler_cancellation=False, defaults={}) as start:
        yield start


@pytest.fixture
async def guarded_router() -> AsyncIterator[Callable[..., Any]]:
    """Like `start_router`, served as `caldera router` serves: handler cancellation on disconnect."""
    async with _in_process_routers(handler_cancellation=True, defaults={"kvEvents": False}) as start:
        yield start


@pytest.fixture
async def router_processes(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    procs: list[RouterProcess] = []

    async def start(name: str, config: dict[str, Any]) -> RouterProcess:
        rp = await start_router_process(tmp_path, name, config)
        procs.append(rp)
        return rp

    yield start
    for rp in procs:
        rp.stop()


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[ProviderServer]:
    """A real HTTPS model provider (self-signed certificate) on 127.0.0.1."""
    server = await ProviderServer(tmp_path).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = await start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()
