"""Graceful drain on SIGTERM: refuse new requests with 503, let in-flight ones finish, then stop.

As Dynamo's graceful shutdown: the router turns unready at once (Kubernetes stops sending),
answers new inference requests with 503 + Retry-After (clients and gateways retry another
replica), and exits when the last in-flight request is done or the grace period ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

log = logging.getLogger("caldera.router.drain")


class Drain:
    def __init__(self, grace_s: float = 30.0) -> None:
        self.grace_s = grace_s
        self.draining = False
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._signalled = asyncio.Event()

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight = max(0, self.inflight - 1)
        if self.inflight == 0:
            self._idle.set()

    def begin(self) -> None:
        if not self.draining:
            log.info("draining: refusing new requests", extra={"inflight": self.inflight})
        self.draining = True
        self._signalled.set()

    async def wait_idle(self, timeout_s: float | None = None) -> bool:
        """True when no request is in flight (within the timeout)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def run_until_signalled(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
                                  on_signal: Callable[[], None] | None = None) -> bool:
        """Wait for SIGTERM/SIGINT, drain, and return whether every in-flight request finished."""
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, on_signal or self.begin)
        try:
            await self._signalled.wait()
            started = time.monotonic()
            clean = await self.wait_idle(self.grace_s)
            log.info("drained" if clean else "drain grace period over; cutting the rest",
                     extra={"inflight": self.inflight, "seconds": round(time.monotonic() - started, 3)})
            return clean
        finally:
            for sig in signals:
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(sig)
