"""Measures event-loop lag inside the server: how late a periodic timer fires."""

from __future__ import annotations

import asyncio
from collections import deque


class LoopLagMonitor:
    def __init__(self, interval: float = 0.01, window: int = 500) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self.max_ever = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - start - self.interval)
            self.samples.append(lag)
            self.max_ever = max(self.max_ever, lag)

    def recent_max(self) -> float:
        return max(self.samples, default=0.0)

    def reset(self) -> None:
        self.samples.clear()
        self.max_ever = 0.0

    def stats(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"samples": 0, "p50": 0.0, "p99": 0.0, "max": 0.0, "max_ever": self.max_ever}
        return {
            "samples": len(ordered),
            "p50": ordered[len(ordered) // 2],
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "max": ordered[-1],
            "max_ever": self.max_ever,
        }

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
