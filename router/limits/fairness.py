"""Per-user fairness: a virtual token counter over a sliding window orders who goes next.

As Kthena's fairness scheduling: each user's recent usage is `inputWeight·input +
outputWeight·output` tokens (+ `requestWeight` per request) over the window; when the
model's concurrency gate is full, waiting requests are admitted lowest usage first, FIFO
within a user, anonymous users last. One addition keeps light users' latency near their
solo latency: the last `reserved` slots of the gate only admit users holding less than
their fair share of the other slots (unreserved slots / active users), so a flooding user is throttled in the queue
while a light user's request starts at once instead of waiting for a heavy request to end.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field

ANONYMOUS = ""


class QueueFull(Exception):
    pass


class QueueTimeout(Exception):
    pass


@dataclass
class UsageWindow:
    """Weighted tokens per user over the last `window_s`, in `buckets` slices (bounded memory)."""

    window_s: float = 300.0
    buckets: int = 30
    _slices: dict[str, deque[list[float]]] = field(default_factory=dict)  # user -> [[start, tokens, reqs]]

    def _trim(self, user: str, now: float) -> deque[list[float]] | None:
        q = self._slices.get(user)
        if q is None:
            return None
        while q and q[0][0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._slices[user]
            return None
        return q

    def add(self, user: str, tokens: float, requests: int, now: float) -> None:
        width = self.window_s / self.buckets
        start = now - now % width
        q = self._trim(user, now) or self._slices.setdefault(user, deque())
        if q and q[-1][0] == start:
            q[-1][1] += tokens
            q[-1][2] += requests
        else:
            q.append([start, tokens, requests])

    def usage(self, user: str, now: float) -> tuple[float, float]:
        q = self._trim(user, now)
        if q is None:
            return 0.0, 0.0
        return sum(s[1] for s in q), sum(s[2] for s in q)

    def users(self) -> int:
        return len(self._slices)


@dataclass
class FairnessWeights:
    input_weight: float = 1.0
    output_weight: float = 2.0
    token_weight: float = 1.0
    request_weight: float = 0.0


@dataclass
class _Waiter:
    user: str
    seq: int
    future: asyncio.Future[None]
    enqueued: float


class FairGate:
    """One model's concurrency gate with a per-user fair queue in front of it."""

    def __init__(self, max_concurrent: int, reserved: int, usage: UsageWindow, weights: FairnessWeights,
                 max_queue: int = 10_000) -> None:
        self.max_concurrent = max_concurrent
        self.reserved = min(reserved, max(0, max_concurrent - 1))
        self.usage = usage
        self.weights = weights
        self.max_queue = max_queue
        self.inflight = 0
        self.by_user: dict[str, int] = {}
        self.waiting: dict[str, deque[_Waiter]] = {}
        self.queued = 0
        self._seq = itertools.count()

    def priority(self, user: str, now: float) -> float:
        """Lower is served first; anonymous requests last."""
        if user == ANONYMOUS:
            return math.inf
        tokens, requests = self.usage.usage(user, now)
        return self.weights.token_weight * tokens + self.weights.request_weight * requests

    def _fair_share(self, user: str) -> float:
        """The user's share of the unreserved slots among users holding or awaiting one."""
        active = set(self.by_user) | set(self.waiting) | {user}
        return (self.max_concurrent - self.reserved) / len(active)

    def _admissible(self, user: str) -> bool:
        if self.inflight < self.max_concurrent - self.reserved:
            return True
        if self.inflight >= self.max_concurrent:
            return False
        # Reserved slots: only for users under their fair share, so a flood never takes them.
        return self.by_user.get(user, 0) < self._fair_share(user)

    def _grant(self, user: str) -> None:
        self.inflight += 1
        self.by_user[user] = self.by_user.get(user, 0) + 1

    async def acquire(self, user: str, timeout_s: float) -> float:
        """Wait for a slot; returns the seconds waited. Raises QueueFull or QueueTimeout."""
        if not self.waiting and self._admissible(user):
            self._grant(user)
            return 0.0
        if self.queued >= self.max_queue:
            raise QueueFull(f"fairness queue holds {self.queued} requests (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(user, next(self._seq), loop.create_future(), time.monotonic())
        self.waiting.setdefault(user, deque()).append(waiter)
        self.queued += 1
        self._dispatch()  # this user may be admissible through the reserved slots right away
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
        except TimeoutError:
            if not waiter.future.done():
                self._abandon(waiter)
                raise QueueTimeout(f"waited {timeout_s:g}s in the fairness queue") from None
        except BaseException:  # cancelled: the client went away
            if waiter.future.done():
                self.release(user)  # granted just as it gave up: hand the slot on
            else:
                self._abandon(waiter)
            raise
        return time.monotonic() - waiter.enqueued

    def _abandon(self, waiter: _Waiter) -> None:
        waiter.future.cancel()
        self._remove(waiter)

    def _remove(self, waiter: _Waiter) -> None:
        q = self.waiting.get(waiter.user)
        if q is None:
            return
        try:
            q.remove(waiter)
        except ValueError:
            return
        self.queued -= 1
        if not q:
            del self.waiting[waiter.user]

    def release(self, user: str) -> None:
        self.inflight = max(0, self.inflight - 1)
        left = self.by_user.get(user, 0) - 1
        if left > 0:
            self.by_user[user] = left
        else:
            self.by_user.pop(user, None)
        self._dispatch()

    def _dispatch(self) -> None:
        """Admit waiting requests, lowest usage first, while the gate allows."""
        if not self.waiting:
            return
        now = time.time()
        order = [(self.priority(u, now), q[0].seq, u) for u, q in self.waiting.items()]
        heapq.heapify(order)
        while order and self.inflight < self.max_concurrent:
            _, _, user = heapq.heappop(order)
            if not self._admissible(user):
                continue
            q = self.waiting[user]
            waiter = q.popleft()
            self.queued -= 1
            if not q:
                del self.waiting[user]
            self._grant(user)
            waiter.future.set_result(None)
            if user in self.waiting:
                heapq.heappush(order, (self.priority(user, now), self.waiting[user][0].seq, user))


class Fairness:
    """Gates per model sharing one usage window."""

    def __init__(self, max_concurrent: int, reserved: int, window_s: float, weights: FairnessWeights,
                 max_queue: int = 10_000) -> None:
        self.usage = UsageWindow(window_s=window_s)
        self.weights = weights
        self.max_concurrent = max_concurrent
        self.reserved = reserved
        self.max_queue = max_queue
        self.gates: dict[str, FairGate] = {}

    def gate(self, model: str) -> FairGate:
        g = self.gates.get(model)
        if g is None:
            g = self.gates[model] = FairGate(self.max_concurrent, self.reserved, self.usage, self.weights,
                                             self.max_queue)
        return g

    def charge(self, user: str, input_tokens: int, output_tokens: int, requests: int = 0) -> None:
        if user == ANONYMOUS:
            return
        w = self.weights
        self.usage.add(user, w.input_weight * input_tokens + w.output_weight * output_tokens, requests,
                       time.time())
