"""Measures event-loop lag inside the server: how late a periodic timer fires.

Two figures per sample of a short timer (``--loop-lag-probe-interval``, 20 ms by default,
2 ms in the benchmark): ``lag`` is its wall-clock overshoot;
``cpu_lag`` is the part the loop itself spent on the CPU (``min(lag, thread CPU time used
since the timer was armed)``, over-estimating by at most the work done in one interval). On a
shared, oversubscribed machine the OS may simply not run the process for a while; that
shows in ``lag`` but not in ``cpu_lag``, which is what our own callbacks cost.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


def _summary(values: deque[float], max_ever: float) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"samples": 0, "p50": 0.0, "p99": 0.0, "max": 0.0, "max_ever": max_ever}
    return {
        "samples": len(ordered),
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
        "max_ever": max_ever,
    }


class LoopLagMonitor:
    def __init__(self, interval: float = 0.002, window: int = 5000) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self.cpu_samples: deque[float] = deque(maxlen=window)
        self.max_ever = 0.0
        self.cpu_max_ever = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
        while True:
            start, cpu_start = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.perf_counter() - start - self.interval)
            cpu_lag = min(lag, time.thread_time() - cpu_start)
            self.samples.append(lag)
            self.cpu_samples.append(cpu_lag)
            self.max_ever = max(self.max_ever, lag)
            self.cpu_max_ever = max(self.cpu_max_ever, cpu_lag)

    def recent_max(self) -> float:
        return max(self.samples, default=0.0)

    def reset(self) -> None:
        self.samples.clear()
        self.cpu_samples.clear()
        self.max_ever = 0.0
        self.cpu_max_ever = 0.0

    def stats(self) -> dict[str, float]:
        return _summary(self.samples, self.max_ever)

    def cpu_stats(self) -> dict[str, float]:
        return _summary(self.cpu_samples, self.cpu_max_ever)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
