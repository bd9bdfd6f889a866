"""KV-cache events on the wire exactly as vLLM publishes them.

ZMQ PUB, three frames per message: topic (UTF-8), sequence (8-byte big-endian
unsigned, from 0), msgpack payload. The payload is an ``EventBatch``
``[ts, [event, ...], data_parallel_rank]``. Events are encoded one of two ways:

``array`` (vLLM's msgspec ``array_like`` tagged structs; what most decoders expect)
    ``["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium]``,
    ``["BlockRemoved", block_hashes, medium]``, ``["AllBlocksCleared"]``.

``map`` (vLLM after PR #42892: tagged maps inside the array batch)
    ``{"type": "BlockStored", "block_hashes": ..., "parent_block_hash": ..., "token_ids": ...,
    "block_size": ..., "lora_id": ..., "medium": ..., "lora_name": ...}`` and likewise.

Block hashes are unsigned 64-bit integers (vLLM's default int form), computed by
:mod:`enginesim.blocks`. A ROUTER replay socket answers a request
``[identity, b"", start_seq(8-byte BE)]`` with ``[identity, b"", seq, payload]`` for
every buffered batch with ``seq >= start_seq``, then ``[identity, b"", -1 (8-byte BE
signed), b""]``, as vLLM's ``ZmqEventPublisher`` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import zmq
import zmq.asyncio

from enginesim.kvcache import AllBlocksClearedEvent, BlockRemovedEvent, BlockStoredEvent, KVEvent

log = logging.getLogger(__name__)

Encoding = Literal["array", "map"]
END_SEQ = (-1).to_bytes(8, "big", signed=True)


@dataclass(frozen=True)
class KVEventsConfig:
    """The subset of vLLM's ``--kv-events-config`` the simulator honours."""

    enable_kv_cache_events: bool = False
    publisher: str = "null"
    endpoint: str = "tcp://*:5557"
    replay_endpoint: str | None = None
    buffer_steps: int = 10_000
    hwm: int = 100_000
    topic: str = ""

    @classmethod
    def parse(cls, text: str) -> KVEventsConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"kv-events-config: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError("kv-events-config: expected a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known - {"max_queue_size"})
        if unknown:
            raise ValueError(f"kv-events-config: unknown keys {unknown}; expected some of {sorted(known)}")
        raw.pop("max_queue_size", None)
        cfg = cls(**raw)
        # vLLM: publisher defaults to zmq when events are enabled.
        if cfg.enable_kv_cache_events and cfg.publisher == "null" and "publisher" not in raw:
            cfg = cls(**{**raw, "publisher": "zmq"})
        if cfg.publisher not in ("null", "zmq"):
            raise ValueError(f"kv-events-config.publisher: expected 'null' or 'zmq', got {cfg.publisher!r}")
        return cfg

    @property
    def active(self) -> bool:
        return self.enable_kv_cache_events and self.publisher == "zmq"


def encode_event(event: KVEvent, encoding: Encoding) -> Any:
    if isinstance(event, BlockStoredEvent):
        if encoding == "array":
            return ["BlockStored", event.block_hashes, event.parent_block_hash, event.token_ids,
                    event.block_size, event.lora_id, event.medium]
        return {"type": "BlockStored", "block_hashes": event.block_hashes,
                "parent_block_hash": event.parent_block_hash, "token_ids": event.token_ids,
                "block_size": event.block_size, "lora_id": event.lora_id, "medium": event.medium,
                "lora_name": event.lora_name}
    if isinstance(event, BlockRemovedEvent):
        if encoding == "array":
            return ["BlockRemoved", event.block_hashes, event.medium]
        return {"type": "BlockRemoved", "block_hashes": event.block_hashes, "medium": event.medium}
    if isinstance(event, AllBlocksClearedEvent):
        return ["AllBlocksCleared"] if encoding == "array" else {"type": "AllBlocksCleared"}
    raise TypeError(f"unknown KV event {event!r}")


def encode_batch(ts: float, events: list[KVEvent], encoding: Encoding, dp_rank: int = 0) -> bytes:
    payload = [ts, [encode_event(e, encoding) for e in events], dp_rank]
    return msgpack.packb(payload, use_bin_type=True)


def resolve_endpoint(endpoint: str, host: str) -> str:
    """Bind the wildcard to the engine's own address: pods share this machine's stack."""
    return endpoint.replace("*", host).replace("0.0.0.0", host)


class KVEventPublisher:
    """Batches events per event-loop turn and publishes them with sequence numbers."""

    def __init__(self, config: KVEventsConfig, encoding: Encoding, host: str, topic: str) -> None:
        self.config = config
        self.encoding = encoding
        self.topic = topic.encode("utf-8")
        # PUB is a plain socket: a non-blocking send returns at once (PUB drops at the HWM);
        # only the replay ROUTER needs asyncio.
        self._pub_ctx = zmq.Context()
        self._ctx = zmq.asyncio.Context()
        self._pub = self._pub_ctx.socket(zmq.PUB)
        self._pub.set_hwm(config.hwm)
        endpoint = resolve_endpoint(config.endpoint, host)
        # vLLM: bind when the endpoint is a wildcard/ipc/inproc, else connect.
        if "*" in config.endpoint or "::" in config.endpoint or config.endpoint.startswith(("ipc://", "inproc://")):
            self._pub.bind(endpoint)
        else:
            self._pub.connect(endpoint)
        self.endpoint = endpoint
        self._replay: zmq.asyncio.Socket | None = None
        self.replay_endpoint: str | None = None
        if config.replay_endpoint:
            self.replay_endpoint = resolve_endpoint(config.replay_endpoint, host)
            self._replay = self._ctx.socket(zmq.ROUTER)
            self._replay.bind(self.replay_endpoint)
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=config.buffer_steps)
        self._pending: list[KVEvent] = []
        self._seq = 0
        self._flush_scheduled = False
        self._replay_task: asyncio.Task[None] | None = None
        self.published_batches = 0

    def start(self) -> None:
        if self._replay is not None:
            self._replay_task = asyncio.get_running_loop().create_task(self._serve_replay())

    def emit(self, event: KVEvent) -> None:
        self._pending.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        payload = encode_batch(time.time(), self._pending, self.encoding)
        self._pending = []
        seq = self._seq
        self._seq += 1
        self._buffer.append((seq, payload))
        try:
            self._pub.send_multipart([self.topic, seq.to_bytes(8, "big"), payload], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("KV event batch %d dropped: PUB high-water mark reached", seq)
        self.published_batches += 1

    async def _serve_replay(self) -> None:
        assert self._replay is not None
        while True:
            frames = await self._replay.recv_multipart()
            if len(frames) != 3:
                log.warning("invalid KV event replay request with %d frames", len(frames))
                continue
            identity, _, start = frames
            start_seq = int.from_bytes(start, "big")
            for seq, payload in list(self._buffer):
                if seq >= start_seq:
                    await self._replay.send_multipart([identity, b"", seq.to_bytes(8, "big"), payload])
            await self._replay.send_multipart([identity, b"", END_SEQ, b""])

    async def close(self) -> None:
        self.flush()
        if self._replay_task is not None:
            self._replay_task.cancel()
        self._pub.close(linger=100)
        if self._replay is not None:
            self._replay.close(linger=0)
        self._pub_ctx.term()
        self._ctx.term()
