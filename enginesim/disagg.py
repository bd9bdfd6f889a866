"""Prefill/decode disaggregation: vLLM's NIXL connector and SGLang's bootstrap protocol.

**NIXL** (vLLM ``--kv-transfer-config '{"kv_connector":"NixlConnector",...}'``). A request
with ``kv_transfer_params {"do_remote_decode": true}`` is a prefill: it runs normally,
keeps its KV blocks after finishing (until pulled or ``--kv-transfer-timeout``) and
returns ``kv_transfer_params {"do_remote_prefill": true, "do_remote_decode": false,
"remote_engine_id", "remote_request_id", "remote_block_ids", "remote_host",
"remote_port", "tp_size"}``. A request carrying those is a decode: it pulls the blocks
from the prefill engine (here: ``POST http://remote_host:remote_port/internal/nixl/pull``,
which releases them), skips the prefill compute and pays the transfer time instead. If
the pull fails the decode recomputes the prefill locally (vLLM's ``recompute`` policy).

**SGLang bootstrap** (``--disaggregation-mode prefill|decode``). The router sends the
same request to both with ``bootstrap_host`` (the prefill), ``bootstrap_port`` and a
random ``bootstrap_room``. The prefill engine serves the bootstrap port; the decode
engine long-polls ``GET http://bootstrap_host:bootstrap_port/bootstrap/room/<room>``
until the prefill of that room is done, then pays the transfer time and decodes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)


class BootstrapRooms:
    """Rooms whose prefill finished (or will), each a future of the prompt length."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._rooms: dict[int, asyncio.Future[int]] = {}

    def _future(self, room: int) -> asyncio.Future[int]:
        fut = self._rooms.get(room)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._rooms[room] = fut
            asyncio.get_running_loop().call_later(self.ttl, self._rooms.pop, room, None)
        return fut

    def complete(self, room: int, num_tokens: int) -> None:
        fut = self._future(room)
        if not fut.done():
            fut.set_result(num_tokens)

    def fail(self, room: int, reason: str) -> None:
        fut = self._future(room)
        if not fut.done():
            fut.set_exception(RuntimeError(reason))
            fut.exception()  # retrieved: no "never retrieved" warning if no decode asks

    async def wait(self, room: int, timeout: float) -> int:
        return await asyncio.wait_for(asyncio.shield(self._future(room)), timeout)


def bootstrap_app(rooms: BootstrapRooms) -> web.Application:
    async def room_handler(request: web.Request) -> web.Response:
        try:
            room = int(request.match_info["room"])
            timeout = float(request.query.get("timeout", "30"))
        except ValueError:
            return web.json_response({"error": "room and timeout must be numbers"}, status=400)
        try:
            tokens = await rooms.wait(room, timeout)
        except TimeoutError:
            return web.json_response({"error": f"room {room} not prefilled within {timeout}s"}, status=404)
        except RuntimeError as exc:
            return web.json_response({"error": str(exc)}, status=410)
        return web.json_response({"room": room, "num_tokens": tokens})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/bootstrap/room/{room}", room_handler)
    app.router.add_get("/health", health)
    return app


async def wait_for_bootstrap(host: str, port: int, room: int, timeout: float) -> int:
    """Long-poll the prefill engine's bootstrap server; returns the transferred prompt length."""
    url = f"http://{host}:{port}/bootstrap/room/{room}"
    client_timeout = aiohttp.ClientTimeout(total=timeout + 5)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, \
            session.get(url, params={"timeout": str(timeout)}) as resp:
        body: dict[str, Any] = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"bootstrap {host}:{port} room {room}: {body.get('error', resp.status)}")
        return int(body["num_tokens"])


async def nixl_pull(params: dict[str, Any], timeout: float = 10.0) -> int:
    """Pull (and release) the prefill engine's blocks; returns the number of tokens."""
    host, port = params.get("remote_host"), params.get("remote_port")
    if not isinstance(host, str) or not isinstance(port, int):
        raise RuntimeError("kv_transfer_params: remote_host (string) and remote_port (integer) are required")
    payload = {k: params.get(k) for k in ("remote_engine_id", "remote_request_id", "remote_block_ids")}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.post(f"http://{host}:{port}/internal/nixl/pull", json=payload) as resp:
        body: dict[str, Any] = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"NIXL pull from {host}:{port} failed: {body.get('error', resp.status)}")
        return int(body["num_tokens"])
