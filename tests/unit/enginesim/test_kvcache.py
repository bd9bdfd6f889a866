"""The paged KV cache: prefix matching, LRU eviction, usage and events (pure, no processes)."""

from __future__ import annotations

import pytest

from enginesim.blocks import hash_blocks
from enginesim.kvcache import (
    AllBlocksClearedEvent,
    BlockManager,
    BlockRemovedEvent,
    BlockStoredEvent,
    KVEvent,
    OutOfBlocks,
)


def manager(n: int = 8, bs: int = 4) -> tuple[BlockManager, list[KVEvent]]:
    events: list[KVEvent] = []
    return BlockManager(n, bs, events.append), events


def store(bm: BlockManager, tokens: list[int]) -> tuple[list[int], list[int]]:
    hashes = hash_blocks(tokens, bm.block_size)
    ids = bm.allocate(len(hashes))
    bm.commit(ids, hashes, tokens, None)
    return ids, hashes


def test_usage_counts_referenced_blocks_only() -> None:
    bm, _ = manager()
    ids, _ = store(bm, list(range(8)))
    assert bm.usage() == 2 / 8
    bm.free(ids)
    assert bm.usage() == 0


def test_commit_publishes_one_block_stored_with_chain() -> None:
    bm, events = manager()
    _, hashes = store(bm, list(range(8)))
    assert events == [BlockStoredEvent(hashes, None, list(range(8)), 4, None, None)]


def test_freed_blocks_stay_cached_for_prefix_matches() -> None:
    bm, _ = manager()
    ids, _hashes = store(bm, list(range(12)))
    bm.free(ids)
    assert bm.match_prefix(hash_blocks([*list(range(8)), 99, 98, 97, 96], 4)) == ids[:2]


def test_match_stops_at_the_first_miss() -> None:
    bm, _ = manager()
    ids, hashes = store(bm, list(range(8)))
    assert bm.match_prefix([hashes[0], 12345, hashes[1]]) == ids[:1]


def test_allocation_evicts_least_recently_freed_first() -> None:
    bm, events = manager(n=4)
    old_ids, old_hashes = store(bm, [1] * 8)
    bm.free(old_ids)
    new_ids, _ = store(bm, [2] * 8)
    bm.free(new_ids)
    events.clear()
    bm.allocate(2)
    assert events == [BlockRemovedEvent([old_hashes[1], old_hashes[0]])]
    assert bm.match_prefix(old_hashes) == []


def test_tail_blocks_of_a_request_are_evicted_before_its_head() -> None:
    bm, events = manager(n=3)
    ids, hashes = store(bm, [5] * 12)
    bm.free(ids)
    events.clear()
    bm.allocate(1)
    assert events == [BlockRemovedEvent([hashes[2]])]


def test_touch_takes_cached_blocks_off_the_free_queue() -> None:
    bm, _ = manager(n=2)
    ids, hashes = store(bm, [7] * 8)
    bm.free(ids)
    bm.touch(bm.match_prefix(hashes))
    with pytest.raises(OutOfBlocks):
        bm.allocate(1)


def test_can_allocate_accounts_for_reused_free_blocks() -> None:
    bm, _ = manager(n=4)
    ids, _hashes = store(bm, [3] * 8)
    bm.free(ids)
    assert bm.can_allocate(2, reuse=ids)
    assert not bm.can_allocate(3, reuse=ids)


def test_duplicate_hash_is_not_stored_twice() -> None:
    bm, events = manager()
    store(bm, list(range(4)))
    events.clear()
    ids = bm.allocate(1)
    bm.commit(ids, hash_blocks(list(range(4)), 4), list(range(4)), None)
    assert events == []


def test_reset_clears_only_when_nothing_is_referenced() -> None:
    bm, events = manager()
    ids, _ = store(bm, list(range(4)))
    assert not bm.reset_prefix_cache()
    bm.free(ids)
    assert bm.reset_prefix_cache()
    assert events[-1] == AllBlocksClearedEvent()
    assert bm.num_cached == 0
