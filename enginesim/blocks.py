"""Chained KV-block hashes, shared by the engine simulator and the router.

Only *full* blocks are hashed (as in vLLM v1). The hash of block ``i`` is::

    h_i = blake2b(digest_size=8,
                  data = b"caldera-kvblock-v1"
                         + parent.to_bytes(8, "big")          # h_{i-1}, or none_hash(seed) for i = 0
                         + len(extra).to_bytes(4, "big") + extra   # UTF-8 extra key ("" if none)
                         + tokens as uint32 little-endian)     # the block's token ids
    as an unsigned 64-bit big-endian integer

``extra`` carries what vLLM puts in ``extra_keys``: the LoRA adapter name (every block)
and, for the first block only, ``cache_salt`` (joined as ``"lora=<name>;salt=<salt>"``,
see :func:`extra_key`). ``none_hash(seed)`` is the parent of the first block; the seed is
the engine's ``--hash-seed`` (default 0), like vLLM's ``PYTHONHASHSEED``-derived
``NONE_HASH``. These 64-bit ints are exactly the ``block_hashes`` /
``parent_block_hash`` values the simulator publishes in KV events (vLLM's
"int block hashes" form), so a router can match engine events against
``hash_blocks(tokenize(prompt), block_size)`` directly.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

_DOMAIN = b"caldera-kvblock-v1"


def none_hash(seed: int = 0) -> int:
    """The parent hash of the first block for a given hash seed."""
    digest = hashlib.blake2b(_DOMAIN + b"none" + seed.to_bytes(8, "big", signed=True), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def extra_key(lora_name: str | None = None, cache_salt: str | None = None, first_block: bool = False) -> str:
    """The extra key of a block: the LoRA name, plus the cache salt on the first block."""
    parts: list[str] = []
    if lora_name:
        parts.append(f"lora={lora_name}")
    if first_block and cache_salt:
        parts.append(f"salt={cache_salt}")
    return ";".join(parts)


def hash_block(parent: int | None, tokens: Sequence[int], extra: str = "", seed: int = 0) -> int:
    """Hash one full block given its parent's hash (None for the first block)."""
    parent_value = none_hash(seed) if parent is None else parent
    extra_bytes = extra.encode("utf-8")
    h = hashlib.blake2b(digest_size=8)
    h.update(_DOMAIN)
    h.update(parent_value.to_bytes(8, "big"))
    h.update(len(extra_bytes).to_bytes(4, "big"))
    h.update(extra_bytes)
    h.update(struct.pack(f"<{len(tokens)}I", *tokens))
    return int.from_bytes(h.digest(), "big")


def hash_blocks(
    token_ids: Sequence[int],
    block_size: int,
    lora_name: str | None = None,
    cache_salt: str | None = None,
    seed: int = 0,
    parent: int | None = None,
) -> list[int]:
    """Chained hashes of every full block of ``token_ids`` (a trailing partial block is ignored).

    ``parent`` continues an existing chain (the hash of the block before ``token_ids[0]``).
    """
    if block_size <= 0:
        raise ValueError(f"block_size: must be positive, got {block_size}")
    hashes: list[int] = []
    prev = parent
    for index in range(len(token_ids) // block_size):
        start = index * block_size
        extra = extra_key(lora_name, cache_salt, first_block=(start == 0 and parent is None))
        prev = hash_block(prev, token_ids[start : start + block_size], extra, seed)
        hashes.append(prev)
    return hashes
