"""Fixtures for the router's end-to-end tests: real enginesim processes, in-process routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from router.config import RouterConfig
from router.harness import Engines, RunningRouter, free_port
from router.server import Router


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[Engines]:
    e = Engines(tmp_path)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
async def start_router() -> AsyncIterator[Callable[..., Any]]:
    runners: list[tuple[web.AppRunner, aiohttp.ClientSession]] = []

    async def start(**cfg: Any) -> RunningRouter:
        cfg.setdefault("port", free_port())
        cfg.setdefault("metricsInterval", 0.05)
        config = RouterConfig.model_validate(cfg)
        router = Router(config)
        router.load_static()
        runner = web.AppRunner(router.app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", config.port).start()
        session = aiohttp.ClientSession()
        runners.append((runner, session))
        return RunningRouter(router=router, url=f"http://127.0.0.1:{config.port}", session=session)

    yield start
    for runner, session in runners:
        await session.close()
        await runner.cleanup()
