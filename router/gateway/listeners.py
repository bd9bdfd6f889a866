"""One HTTP or HTTPS server per Gateway listener port.

All ports serve the router's one aiohttp application (one `AppRunner`, one `TCPSite` per
port), so every listener shares the router's state, endpoints and scheduler; the handler
tells listeners apart by the local port the request arrived on. The main port is never
opened or closed here. A port that cannot be bound is remembered with its error (reported
in the Gateway's status and the debug dump) and retried on the next reconcile.

An HTTPS port serves with the certificates of its listeners (`PortCertificates`: picked by
SNI). When a certificate changes (its Secret was updated) it is swapped in while the port keeps
serving; only a change between HTTP and HTTPS reopens the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable, Mapping

from aiohttp import web

from router.gateway.tls import PortCertificates, PortTLS

log = logging.getLogger(__name__)


class ListenerManager:
    def __init__(self, host: str, main_port: int) -> None:
        self.host = host
        self.main_port = main_port
        self.runner: web.AppRunner | None = None
        self.sites: dict[int, web.TCPSite] = {}
        self.tls: dict[int, PortCertificates | None] = {}  # what each open site serves with
        self.errors: dict[int, str] = {}
        self._desired: dict[int, PortTLS | None] = {}
        self._lock = asyncio.Lock()

    async def bind(self, runner: web.AppRunner) -> None:
        """Start serving: the runner is set up (and its main site started) by the caller."""
        self.runner = runner
        await self.reconcile(self._desired)

    async def reconcile(self, ports: Mapping[int, PortTLS | None] | Iterable[int]) -> None:
        """Open a server on every desired port not yet open (HTTPS where certificates are given);
        close those no longer desired; swap in the changed certificates of an open HTTPS port;
        reopen a port that switches between HTTP and HTTPS."""
        wanted: dict[int, PortTLS | None] = dict(ports) if isinstance(ports, Mapping) else dict.fromkeys(ports)
        self._desired = {p: tls for p, tls in wanted.items() if p != self.main_port}
        if self.runner is None:
            return
        async with self._lock:
            for port in sorted(self.sites):
                current, want = self.tls.get(port), self._desired.get(port)
                if port in self._desired and current is not None and want is not None:
                    if current.entries != want:
                        self._swap(port, current, want)
                    continue
                if port not in self._desired or (current is None) != (want is None):
                    site = self.sites.pop(port)
                    self.tls.pop(port, None)
                    await site.stop()
                    log.info("gateway listener closed", extra={"port": port})
            for port in list(self.errors):
                if port not in self._desired:
                    del self.errors[port]
            for port in sorted(set(self._desired) - set(self.sites)):
                await self._open(port, self._desired[port])

    def _swap(self, port: int, current: PortCertificates, wanted: PortTLS) -> None:
        try:
            current.update(wanted)
        except (ssl.SSLError, OSError, ValueError) as exc:  # the port keeps its current certificates
            log.error("gateway listener keeps its previous certificate: the new one does not load",
                      extra={"port": port, "certificates": [c.source for _, c in wanted], "reason": str(exc)})
            return
        log.info("gateway listener certificate reloaded", extra={
            "port": port, "certificates": [f"{c.source}@{c.resource_version}" for _, c in wanted]})

    async def _open(self, port: int, tls: PortTLS | None) -> None:
        assert self.runner is not None
        certs: PortCertificates | None = None
        if tls is not None:
            try:
                certs = PortCertificates(tls)
            except (ssl.SSLError, OSError, ValueError) as exc:
                self._failed(port, f"cannot load the certificate of {', '.join(c.source for _, c in tls)}: {exc}")
                return
        site = web.TCPSite(self.runner, self.host, port, backlog=4096, reuse_address=True,
                           ssl_context=certs.front if certs is not None else None)
        try:
            await site.start()
        except OSError as exc:
            with contextlib.suppress(RuntimeError):
                await site.stop()  # start() registered it with the runner before binding
            self._failed(port, str(exc))
            return
        self.errors.pop(port, None)
        self.sites[port] = site
        self.tls[port] = certs
        scheme = "https" if tls is not None else "http"
        log.info("gateway listener open", extra={"host": self.host, "port": port, "scheme": scheme,
                                                  "certificates": [c.source for _, c in tls or ()]})

    def _failed(self, port: int, error: str) -> None:
        if self.errors.get(port) != error:
            log.error("gateway listener cannot serve", extra={"host": self.host, "port": port, "reason": error})
        self.errors[port] = error

    def open_ports(self) -> set[int]:
        return set(self.sites)

    async def close(self) -> None:
        async with self._lock:
            for site in self.sites.values():
                await site.stop()
            self.sites.clear()
            self.tls.clear()
