"""Test and benchmark helpers for Gateway mode: a real echo backend and a router in static
Gateway mode (its main port and Gateway listeners served on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from router.config import RouterConfig
from router.gateway.mode import GatewayMode
from router.harness import free_port
from router.server import Router


@asynccontextmanager
async def echo_server(name: str = "echo") -> AsyncIterator[str]:
    """An HTTP server answering every POST with what it received (path, headers) and its name,
    as an OpenAI-like JSON body; yields its address (127.0.0.1:port)."""
    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"object": "text_completion", "model": "echo", "server": name,
                                  "path": request.path_qs,
                                  "headers": {k.lower(): v for k, v in request.headers.items()}})

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def static_gateway_router(cfg: dict[str, Any]) -> AsyncIterator[tuple[Router, GatewayMode]]:
    """A router configured by `cfg` (RouterConfig fields, with a `gateway` section) in static mode."""
    config = RouterConfig.model_validate({"port": free_port(), "metricsInterval": 0.05, "kvEvents": False, **cfg})
    router = Router(config)
    mode = GatewayMode(router, config.gateway)
    mode.load_static()
    runner = web.AppRunner(router.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    await mode.bind(runner)
    try:
        yield router, mode
    finally:
        await mode.close()
        await runner.cleanup()
