"""Fixtures for limits tests: in-process routers, router processes and a private redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from router.config import RouterConfig
from router.harness import RunningRouter, free_port
from router.resilience.harness import RedisServer, RouterProcess, start_redis, start_router_process
from router.server import Router


@pytest.fixture
async def guarded_router() -> AsyncIterator[Callable[..., Any]]:
    """Like `start_router`, served as `caldera router` serves: handler cancellation on disconnect."""
    runners: list[tuple[web.AppRunner, aiohttp.ClientSession]] = []

    async def start(**cfg: Any) -> RunningRouter:
        cfg.setdefault("port", free_port())
        cfg.setdefault("metricsInterval", 0.05)
        cfg.setdefault("kvEvents", False)
        config = RouterConfig.model_validate(cfg)
        router = Router(config)
        router.load_static()
        runner = web.AppRunner(router.app, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", config.port).start()
        session = aiohttp.ClientSession()
        runners.append((runner, session))
        return RunningRouter(router=router, url=f"http://127.0.0.1:{config.port}", session=session)

    yield start
    for runner, session in runners:
        await session.close()
        await runner.cleanup()


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
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = await start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()
