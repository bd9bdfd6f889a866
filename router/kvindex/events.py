"""Decoding vLLM/SGLang KV-cache events (ZMQ frames, msgpack) in both encodings.

A message is three frames: topic, an 8-byte big-endian sequence number, and a msgpack
`EventBatch`: `[ts, [event, ...], dp_rank?]`. Events are either tagged arrays
(`["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
lora_name?]`, vLLM up to 0.25) or tagged maps (`{"type": "BlockStored", ...}`, vLLM PR
#42892). Block hashes are ints, or digests whose low 64 bits (last 8 bytes, big-endian) are
used as the int.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack


class EventDecodeError(ValueError):
    pass


@dataclass(frozen=True)
class BlockStored:
    block_hashes: tuple[int, ...]
    parent_block_hash: int | None
    token_ids: tuple[int, ...]
    block_size: int
    lora_name: str | None = None
    medium: str | None = None


@dataclass(frozen=True)
class BlockRemoved:
    block_hashes: tuple[int, ...]
    medium: str | None = None


@dataclass(frozen=True)
class AllBlocksCleared:
    pass


Event = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True)
class EventBatch:
    ts: float
    events: tuple[Event, ...]
    dp_rank: int | None = None


def as_hash(value: Any) -> int:
    if isinstance(value, bool):
        raise EventDecodeError(f"block hash must be an int or bytes, got {value!r}")
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(bytes(value[-8:]), "big")
    raise EventDecodeError(f"block hash must be an int or bytes, got {type(value).__name__}")


_STORED_FIELDS = ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium",
                  "lora_name")
_REMOVED_FIELDS = ("block_hashes", "medium")


def _fields(raw: Any, names: Sequence[str]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    return dict(zip(names, raw[1:], strict=False))


def decode_event(raw: Any) -> Event | None:
    """One event, or None for event kinds routing does not use."""
    if isinstance(raw, dict):
        kind = raw.get("type")
    elif isinstance(raw, list | tuple) and raw:
        kind = raw[0]
    else:
        raise EventDecodeError(f"event must be a tagged array or map, got {raw!r:.80}")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind == "BlockStored":
        f = _fields(raw, _STORED_FIELDS)
        parent = f.get("parent_block_hash")
        lora = f.get("lora_name")
        return BlockStored(
            block_hashes=tuple(as_hash(h) for h in f.get("block_hashes") or ()),
            parent_block_hash=None if parent is None else as_hash(parent),
            token_ids=tuple(int(t) for t in f.get("token_ids") or ()),
            block_size=int(f.get("block_size") or 0),
            lora_name=lora if isinstance(lora, str) and lora else None,
            medium=f.get("medium"),
        )
    if kind == "BlockRemoved":
        f = _fields(raw, _REMOVED_FIELDS)
        return BlockRemoved(block_hashes=tuple(as_hash(h) for h in f.get("block_hashes") or ()),
                            medium=f.get("medium"))
    if kind == "AllBlocksCleared":
        return AllBlocksCleared()
    return None


def decode_batch(payload: bytes) -> EventBatch:
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise EventDecodeError(f"event batch is not msgpack: {exc}") from None
    if isinstance(obj, dict):
        ts, events, rank = obj.get("ts", 0.0), obj.get("events", []), obj.get("data_parallel_rank")
    elif isinstance(obj, list | tuple) and len(obj) >= 2:
        ts, events = obj[0], obj[1]
        rank = obj[2] if len(obj) > 2 else None
    else:
        raise EventDecodeError(f"event batch must be [ts, events, dp_rank?], got {obj!r:.80}")
    if not isinstance(events, list | tuple):
        raise EventDecodeError("event batch: events must be an array")
    decoded = tuple(e for e in (decode_event(raw) for raw in events) if e is not None)
    return EventBatch(ts=float(ts or 0.0), events=decoded, dp_rank=rank)


def decode_seq(frame: bytes) -> int:
    if len(frame) != 8:
        raise EventDecodeError(f"sequence frame must be 8 bytes, got {len(frame)}")
    return int.from_bytes(frame, "big", signed=True)
