"""One ZMQ subscriber per pod feeding the precise index, with gap detection and replay.

The engine binds a PUB socket (vLLM's `--kv-events-config` endpoint) and optionally a
ROUTER replay socket. On start and on any sequence gap the subscriber asks the replay socket
for every batch from the next expected sequence number (request: 8-byte big-endian start
seq; replies: seq + payload, ending with seq -1), so the index converges to the engine's
cache even after lost messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq
import zmq.asyncio

from router.kvindex.events import EventDecodeError, decode_batch, decode_seq
from router.kvindex.precise import KVEventIndex

log = logging.getLogger(__name__)


@dataclass
class SubscriberStats:
    batches: int = 0
    gaps: int = 0
    replays: int = 0
    decode_errors: int = 0


@dataclass
class PodSubscriber:
    pod: str
    endpoint: str
    index: KVEventIndex
    ctx: zmq.asyncio.Context
    replay_endpoint: str | None = None
    topic: bytes = b""
    on_batch: Callable[[str], None] | None = None
    on_gap: Callable[[str], None] | None = None
    stats: SubscriberStats = field(default_factory=SubscriberStats)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kv-events {self.pod}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _apply(self, seq: int, payload: bytes) -> None:
        state = self.index.pod(self.pod)
        if state.last_seq is not None and seq <= state.last_seq:
            return  # already applied (replay overlap)
        try:
            batch = decode_batch(payload)
        except EventDecodeError as exc:
            self.stats.decode_errors += 1
            log.warning("bad kv-event batch", extra={"pod": self.pod, "reason": str(exc)})
            state.last_seq = seq
            return
        for event in batch.events:
            self.index.apply(self.pod, event)
        state.last_seq = seq
        self.stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(self.pod)

    async def replay(self, start_seq: int, timeout_s: float = 10.0) -> bool:
        """Fetch and apply buffered batches from start_seq; False when replay is unavailable."""
        if self.replay_endpoint is None:
            return False
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)  # a long buffer replays in one burst
        sock.connect(self.replay_endpoint)
        applied = 0
        try:
            await sock.send_multipart([b"", start_seq.to_bytes(8, "big", signed=True)])
            while True:
                if not await sock.poll(int(timeout_s * 1000)):
                    log.warning("kv-event replay timed out", extra={"pod": self.pod})
                    return False
                frames = await sock.recv_multipart()
                if len(frames) < 3:
                    continue
                seq = decode_seq(frames[-2])
                if seq < 0:
                    self.stats.replays += 1
                    return True
                self._apply(seq, frames[-1])
                applied += 1
                if applied % 64 == 0:
                    await asyncio.sleep(0)  # a long replay must not stall request handling
        finally:
            sock.close()

    async def _run(self) -> None:
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        # Live batches queue here while a replay runs; ZMQ's default high-water mark (1,000)
        # would drop them and force another replay.
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, self.topic)
        sub.connect(self.endpoint)
        state = self.index.pod(self.pod)
        try:
            if state.last_seq is None:
                await self.replay(0)
            while True:
                frames = await sub.recv_multipart()
                if len(frames) < 3:
                    continue
                try:
                    seq = decode_seq(frames[-2])
                except EventDecodeError:
                    self.stats.decode_errors += 1
                    continue
                if state.last_seq is not None and seq > state.last_seq + 1:
                    self.stats.gaps += 1
                    if self.on_gap is not None:
                        self.on_gap(self.pod)
                    log.info("kv-event gap", extra={"pod": self.pod, "expected": state.last_seq + 1, "got": seq})
                    await self.replay(state.last_seq + 1)
                self._apply(seq, frames[-1])
        finally:
            sub.close()


@dataclass
class SubscriberPool:
    """Subscribers keyed by pod; started and stopped as pods come and go."""

    index: KVEventIndex
    ctx: zmq.asyncio.Context = field(default_factory=zmq.asyncio.Context)
    subscribers: dict[str, PodSubscriber] = field(default_factory=dict)
    on_batch: Callable[[str], None] | None = None
    on_gap: Callable[[str], None] | None = None

    def ensure(self, pod: str, endpoint: str, replay_endpoint: str | None = None) -> None:
        current = self.subscribers.get(pod)
        if current is not None and current.endpoint == endpoint:
            return
        if current is not None:
            asyncio.get_running_loop().create_task(current.stop())
        sub = PodSubscriber(pod=pod, endpoint=endpoint, index=self.index, ctx=self.ctx,
                            replay_endpoint=replay_endpoint, on_batch=self.on_batch, on_gap=self.on_gap)
        self.subscribers[pod] = sub
        sub.start()

    async def remove(self, pod: str) -> None:
        sub = self.subscribers.pop(pod, None)
        if sub is not None:
            await sub.stop()
        self.index.clear_pod(pod)

    async def close(self) -> None:
        for pod in list(self.subscribers):
            await self.remove(pod)
        self.ctx.term()
