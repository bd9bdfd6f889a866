"""Approximate prefix index: what each pod probably has cached, from the router's own routing.

No tokenizer: the prompt text is cut into fixed-size character blocks (about
`block_tokens` tokens at 4 characters per token) and chained with xxh64, seeded by the model
name, so a block's hash covers everything before it. Each pod keeps an LRU of the hashes
routed to it, sized like its KV cache, so the index forgets roughly when the engine does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import xxhash

from router.kvindex.matching import leading_matches
from router.request import CHARS_PER_TOKEN


class ApproximateIndex:
    def __init__(self, block_tokens: int = 16, max_blocks: int = 256, lru_capacity: int = 31_250) -> None:
        if block_tokens < 1 or max_blocks < 1 or lru_capacity < 1:
            raise ValueError("block_tokens, max_blocks and lru_capacity must be positive")
        self.block_chars = block_tokens * CHARS_PER_TOKEN
        self.max_blocks = max_blocks
        self.lru_capacity = lru_capacity
        self._owners: dict[int, set[str]] = {}
        self._lru: dict[str, OrderedDict[int, None]] = {}
        self._capacity: dict[str, int] = {}

    def block_hashes(self, model: str, text: str) -> list[int]:
        """Chained hashes of the full byte blocks of `text`, at most max_blocks."""
        size = self.block_chars
        # Blocks are cut on UTF-8 bytes: a common text prefix gives common leading blocks.
        data = text[: self.max_blocks * size].encode("utf-8", "surrogatepass")
        n = min(len(data) // size, self.max_blocks)
        prev = xxhash.xxh64_intdigest(model.encode("utf-8", "surrogatepass"))
        out: list[int] = []
        for i in range(n):
            prev = xxhash.xxh64_intdigest(data[i * size:(i + 1) * size], seed=prev)
            out.append(prev)
        return out

    def match(self, hashes: Sequence[int]) -> dict[str, int]:
        """For each pod holding the first block: how many leading blocks it holds."""
        return leading_matches(self._owners, hashes)

    def set_capacity(self, pod: str, blocks: int) -> None:
        """Size a pod's LRU from its KV cache (num_gpu_blocks, scaled to our block size)."""
        self._capacity[pod] = max(1, blocks)

    def record(self, pod: str, hashes: Iterable[int]) -> None:
        lru = self._lru.setdefault(pod, OrderedDict())
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
            else:
                lru[h] = None
                self._owners.setdefault(h, set()).add(pod)
        cap = self._capacity.get(pod, self.lru_capacity)
        while len(lru) > cap:
            old, _ = lru.popitem(last=False)
            owners = self._owners.get(old)
            if owners is not None:
                owners.discard(pod)
                if not owners:
                    del self._owners[old]

    def remove_pod(self, pod: str) -> None:
        for h in self._lru.pop(pod, {}):
            owners = self._owners.get(h)
            if owners is not None:
                owners.discard(pod)
                if not owners:
                    del self._owners[h]
        self._capacity.pop(pod, None)

    def blocks_of(self, pod: str) -> int:
        return len(self._lru.get(pod, ()))
