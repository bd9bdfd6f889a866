"""A virtual clock: simulated seconds run ``time_scale`` times faster than real ones."""

from __future__ import annotations

import asyncio
import time


class Clock:
    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale: must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Virtual seconds since the clock started."""
        return (time.monotonic() - self._t0) * self.time_scale

    async def sleep(self, virtual_seconds: float) -> None:
        await asyncio.sleep(max(0.0, virtual_seconds) / self.time_scale)

    async def sleep_until(self, virtual_deadline: float) -> None:
        """Sleep to an absolute virtual time; sleeping to deadlines keeps rates exact on average."""
        delay = virtual_deadline - self.now()
        if delay > 0:
            await asyncio.sleep(delay / self.time_scale)
        else:
            await asyncio.sleep(0)
