"""A paged KV cache with block-level prefix caching (vLLM v1 semantics, simplified).

``num_blocks`` blocks of ``block_size`` tokens. A block is either referenced by running
requests (ref > 0) or free. Free blocks sit in one LRU queue; a free block may still
hold a cached hash, and then a later request with the same prefix reuses it. Allocation
takes the least recently freed block and, if it was cached, evicts its hash
(``BlockRemoved``). Committing a full block registers its hash (``BlockStored``).
Usage = referenced blocks / all blocks, like ``vllm:kv_cache_usage_perc``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BlockStoredEvent:
    block_hashes: list[int]
    parent_block_hash: int | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None
    lora_name: str | None
    medium: str = "GPU"


@dataclass(frozen=True)
class BlockRemovedEvent:
    block_hashes: list[int]
    medium: str = "GPU"


@dataclass(frozen=True)
class AllBlocksClearedEvent:
    pass


KVEvent = BlockStoredEvent | BlockRemovedEvent | AllBlocksClearedEvent


class OutOfBlocks(Exception):
    """Not enough free blocks for an allocation."""


@dataclass
class BlockManager:
    num_blocks: int
    block_size: int
    on_event: Callable[[KVEvent], None] | None = None
    # Per-block state in flat lists (not one object per block): 100k+ blocks would otherwise
    # slow start-up and every garbage collection.
    ref: list[int] = field(init=False)
    block_hash: list[int | None] = field(init=False)
    _free: OrderedDict[int, None] = field(init=False)
    _cached: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.num_blocks < 1 or self.block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.ref = [0] * self.num_blocks
        self.block_hash = [None] * self.num_blocks
        self._free = OrderedDict.fromkeys(range(self.num_blocks))
        self._cached = {}

    # -- queries ---------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_cached(self) -> int:
        return len(self._cached)

    def usage(self) -> float:
        return 1.0 - len(self._free) / self.num_blocks

    def is_cached(self, block_hash: int) -> bool:
        return block_hash in self._cached

    def match_prefix(self, block_hashes: Sequence[int]) -> list[int]:
        """Block ids of the longest cached prefix of ``block_hashes``."""
        matched: list[int] = []
        for h in block_hashes:
            block_id = self._cached.get(h)
            if block_id is None:
                break
            matched.append(block_id)
        return matched

    def can_allocate(self, n_new: int, reuse: Sequence[int] = ()) -> bool:
        """Whether ``n_new`` fresh blocks fit after taking ``reuse`` (cached) blocks."""
        reused_free = sum(1 for b in reuse if self.ref[b] == 0)
        return len(self._free) - reused_free >= n_new

    # -- mutations -------------------------------------------------------
    def touch(self, block_ids: Sequence[int]) -> None:
        """Take a reference on cached blocks (removing free ones from the LRU queue)."""
        for b in block_ids:
            if self.ref[b] == 0:
                self._free.pop(b, None)
            self.ref[b] += 1

    def allocate(self, n: int) -> list[int]:
        """Take ``n`` blocks from the LRU head, evicting cached hashes they held."""
        if n > len(self._free):
            raise OutOfBlocks(f"need {n} blocks, {len(self._free)} free")
        taken: list[int] = []
        evicted: list[int] = []
        for _ in range(n):
            b, _ = self._free.popitem(last=False)
            old = self.block_hash[b]
            if old is not None:
                if self._cached.get(old) == b:
                    del self._cached[old]
                    evicted.append(old)
                self.block_hash[b] = None
            self.ref[b] = 1
            taken.append(b)
        if evicted:
            self._emit(BlockRemovedEvent(evicted))
        return taken

    def free(self, block_ids: Sequence[int]) -> None:
        """Drop one reference; unreferenced blocks join the LRU tail, last block first."""
        for b in reversed(block_ids):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self._free[b] = None

    def commit(
        self,
        block_ids: Sequence[int],
        block_hashes: Sequence[int],
        token_ids: Sequence[int],
        parent_block_hash: int | None,
        lora_id: int | None = None,
        lora_name: str | None = None,
    ) -> None:
        """Register full blocks' hashes (in chain order) and publish one BlockStored.

        A hash another block already holds is not registered twice (its block stays
        uncached), as vLLM does for concurrently computed identical blocks.
        """
        bs = self.block_size
        run_hashes: list[int] = []
        run_tokens: list[int] = []
        run_parent = parent_block_hash
        for i, (b, h) in enumerate(zip(block_ids, block_hashes, strict=True)):
            if h in self._cached or self.block_hash[b] is not None:
                if run_hashes:
                    self._emit(BlockStoredEvent(run_hashes, run_parent, run_tokens, bs, lora_id, lora_name))
                    run_hashes, run_tokens = [], []
                run_parent = h
                continue
            self.block_hash[b] = h
            self._cached[h] = b
            run_hashes.append(h)
            run_tokens.extend(token_ids[i * bs : (i + 1) * bs])
        if run_hashes:
            self._emit(BlockStoredEvent(run_hashes, run_parent, run_tokens, bs, lora_id, lora_name))

    def reset_prefix_cache(self) -> bool:
        """Forget every cached hash of unreferenced blocks (vLLM refuses while blocks are in use)."""
        if any(self.ref):
            return False
        self.block_hash = [None] * self.num_blocks
        self._cached.clear()
        self._emit(AllBlocksClearedEvent())
        return True

    def _emit(self, event: KVEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
