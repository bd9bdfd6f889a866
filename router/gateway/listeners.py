"""One HTTP server per Gateway listener port.

All ports serve the router's one aiohttp application (one `AppRunner`, one `TCPSite` per
port), so every listener shares the router's state, endpoints and scheduler; the handler
tells listeners apart by the local port the request arrived on. The main port is never
opened or closed here. A port that cannot be bound is remembered with its error (reported
in the Gateway's status and the debug dump) and retried on the next reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiohttp import web

log = logging.getLogger(__name__)


class ListenerManager:
    def __init__(self, host: str, main_port: int) -> None:
        self.host = host
        self.main_port = main_port
        self.runner: web.AppRunner | None = None
        self.sites: dict[int, web.TCPSite] = {}
        self.errors: dict[int, str] = {}
        self._desired: set[int] = set()
        self._lock = asyncio.Lock()

    async def bind(self, runner: web.AppRunner) -> None:
        """Start serving: the runner is set up (and its main site started) by the caller."""
        self.runner = runner
        await self.reconcile(self._desired)

    async def reconcile(self, ports: Iterable[int]) -> None:
        """Open a server on every desired port not yet open; close those no longer desired."""
        self._desired = {p for p in ports if p != self.main_port}
        if self.runner is None:
            return
        async with self._lock:
            for port in sorted(set(self.sites) - self._desired):
                site = self.sites.pop(port)
                await site.stop()
                log.info("gateway listener closed", extra={"port": port})
            for port in list(self.errors):
                if port not in self._desired:
                    del self.errors[port]
            for port in sorted(self._desired - set(self.sites)):
                site = web.TCPSite(self.runner, self.host, port, backlog=4096, reuse_address=True)
                try:
                    await site.start()
                except OSError as exc:
                    with contextlib.suppress(RuntimeError):
                        await site.stop()  # start() registered it with the runner before binding
                    if self.errors.get(port) != str(exc):
                        log.error("gateway listener cannot bind", extra={"host": self.host, "port": port,
                                                                          "reason": str(exc)})
                    self.errors[port] = str(exc)
                    continue
                self.errors.pop(port, None)
                self.sites[port] = site
                log.info("gateway listener open", extra={"host": self.host, "port": port})

    def open_ports(self) -> set[int]:
        return set(self.sites)

    async def close(self) -> None:
        async with self._lock:
            for site in self.sites.values():
                await site.stop()
            self.sites.clear()
