"""Precise prefix index fed by the engines' KV events.

Dual keys (as llm-d and Dynamo): engine block hashes are only used to find which of *our*
keys an event refers to; our keys are recomputed from the event's `token_ids`, chained with
xxh64 over the token ids (uint32 little-endian), seeded by the LoRA name. So the router
never depends on the engine's hash function, seed or version. A request is scored by
hashing its token ids the same way and counting the leading blocks each pod holds.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import xxhash

from router.kvindex.events import AllBlocksCleared, BlockRemoved, BlockStored, Event
from router.kvindex.matching import leading_matches

ROOT_SEED = 1337


def chain_keys(token_ids: Sequence[int], block_size: int, parent: int | None = None,
               lora: str | None = None, max_blocks: int | None = None) -> list[int]:
    """Our chained keys for every full block of token_ids."""
    n = len(token_ids) // block_size
    if max_blocks is not None:
        n = min(n, max_blocks)
    prev = parent if parent is not None else xxhash.xxh64_intdigest((lora or "").encode(), seed=ROOT_SEED)
    out: list[int] = []
    for i in range(n):
        chunk = token_ids[i * block_size:(i + 1) * block_size]
        prev = xxhash.xxh64_intdigest(struct.pack(f"<{block_size}I", *chunk), seed=prev)
        out.append(prev)
    return out


@dataclass
class PodBlocks:
    engine_to_key: dict[int, int] = field(default_factory=dict)
    last_seq: int | None = None
    unresolved: int = 0  # blocks whose parent we never saw (cannot be re-keyed)


class KVEventIndex:
    def __init__(self, block_size: int | None = None) -> None:
        self.block_size = block_size
        self._owners: dict[int, set[str]] = {}
        self._pods: dict[str, PodBlocks] = {}

    def pod(self, pod: str) -> PodBlocks:
        state = self._pods.get(pod)
        if state is None:
            state = self._pods[pod] = PodBlocks()
        return state

    def apply(self, pod: str, event: Event) -> None:
        state = self.pod(pod)
        if isinstance(event, BlockStored):
            self._stored(pod, state, event)
        elif isinstance(event, BlockRemoved):
            for h in event.block_hashes:
                key = state.engine_to_key.pop(h, None)
                if key is not None:
                    self._drop(pod, key)
        elif isinstance(event, AllBlocksCleared):
            self.clear_pod(pod, keep_seq=True)

    def _stored(self, pod: str, state: PodBlocks, ev: BlockStored) -> None:
        if ev.medium not in (None, "GPU", "gpu"):
            return  # offloaded tiers are not a GPU prefix hit
        size = ev.block_size or self.block_size
        if not size:
            return
        if self.block_size is None:
            self.block_size = size
        parent_key: int | None = None
        if ev.parent_block_hash is not None:
            parent_key = state.engine_to_key.get(ev.parent_block_hash)
            if parent_key is None:
                state.unresolved += len(ev.block_hashes)
                return
        keys = chain_keys(ev.token_ids, size, parent_key, ev.lora_name)
        for engine_hash, key in zip(ev.block_hashes, keys, strict=False):
            state.engine_to_key[engine_hash] = key
            self._owners.setdefault(key, set()).add(pod)

    def _drop(self, pod: str, key: int) -> None:
        owners = self._owners.get(key)
        if owners is not None:
            owners.discard(pod)
            if not owners:
                del self._owners[key]

    def clear_pod(self, pod: str, keep_seq: bool = False) -> None:
        state = self._pods.get(pod)
        if state is None:
            return
        for key in state.engine_to_key.values():
            self._drop(pod, key)
        state.engine_to_key.clear()
        if not keep_seq:
            del self._pods[pod]

    def request_keys(self, token_ids: Sequence[int], lora: str | None = None,
                     max_blocks: int | None = None) -> list[int]:
        if not self.block_size:
            return []
        return chain_keys(token_ids, self.block_size, None, lora, max_blocks)

    def match(self, keys: Sequence[int]) -> dict[str, int]:
        """For each pod holding the first block: how many leading blocks it holds."""
        return leading_matches(self._owners, keys)

    def blocks_of(self, pod: str) -> int:
        state = self._pods.get(pod)
        return len(state.engine_to_key) if state else 0

    def engine_hashes_of(self, pod: str) -> set[int]:
        state = self._pods.get(pod)
        return set(state.engine_to_key) if state else set()
