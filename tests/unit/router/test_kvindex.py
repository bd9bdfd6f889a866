import msgpack
import pytest

from router.kvindex.approximate import ApproximateIndex
from router.kvindex.events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventDecodeError,
    decode_batch,
)
from router.kvindex.precise import KVEventIndex, chain_keys

TEXT = "You are a helpful assistant. " * 20


def test_approximate_match_counts_leading_blocks_per_pod():
    idx = ApproximateIndex(block_tokens=4)
    hashes = idx.block_hashes("m", TEXT)
    idx.record("a", hashes)
    idx.record("b", hashes[:3])
    assert idx.match(hashes) == {"a": len(hashes), "b": 3}


def test_approximate_hashes_share_a_common_prefix_and_depend_on_the_model():
    idx = ApproximateIndex(block_tokens=4)
    a = idx.block_hashes("m", TEXT + "question one")
    b = idx.block_hashes("m", TEXT + "another question")
    assert a[:30] == b[:30]
    assert idx.block_hashes("other", TEXT)[0] != a[0]


def test_approximate_lru_forgets_the_oldest_blocks():
    idx = ApproximateIndex(block_tokens=4, lru_capacity=5)
    first = idx.block_hashes("m", "a" * 16 * 5)
    second = idx.block_hashes("m", "b" * 16 * 5)
    idx.record("p", first)
    idx.record("p", second)
    assert idx.match(first) == {}
    assert idx.match(second) == {"p": 5}


def test_removed_pod_is_forgotten():
    idx = ApproximateIndex(block_tokens=4)
    h = idx.block_hashes("m", TEXT)
    idx.record("p", h)
    idx.remove_pod("p")
    assert idx.match(h) == {}


def stored(hashes, parent, tokens, size=4, lora=None):
    return BlockStored(block_hashes=tuple(hashes), parent_block_hash=parent, token_ids=tuple(tokens),
                       block_size=size, lora_name=lora)


def test_precise_index_rekeys_from_token_ids_not_engine_hashes():
    idx = KVEventIndex()
    tokens = list(range(12))
    idx.apply("a", stored([111, 222], None, tokens[:8]))
    idx.apply("a", stored([333], 222, tokens[8:12]))
    idx.apply("b", stored([9, 8, 7], None, tokens))  # other engine, other hash function
    assert idx.match(idx.request_keys([*tokens, 99, 98])) == {"a": 3, "b": 3}


def test_precise_index_drops_removed_blocks():
    idx = KVEventIndex()
    tokens = list(range(8))
    idx.apply("a", stored([1, 2], None, tokens))
    idx.apply("a", BlockRemoved(block_hashes=(2,)))
    assert idx.match(idx.request_keys(tokens)) == {"a": 1}


def test_all_blocks_cleared_empties_the_pod():
    idx = KVEventIndex()
    idx.apply("a", stored([1, 2], None, list(range(8))))
    idx.apply("a", AllBlocksCleared())
    assert idx.blocks_of("a") == 0


def test_blocks_with_unknown_parent_are_not_indexed():
    idx = KVEventIndex()
    idx.apply("a", stored([5], 404, list(range(4))))
    assert idx.blocks_of("a") == 0 and idx.pod("a").unresolved == 1


def test_lora_blocks_do_not_match_base_model_prompts():
    idx = KVEventIndex()
    tokens = list(range(8))
    idx.apply("a", stored([1, 2], None, tokens, lora="sql"))
    assert idx.match(idx.request_keys(tokens)) == {}
    assert idx.match(idx.request_keys(tokens, lora="sql")) == {"a": 2}


def test_chain_keys_ignore_a_trailing_partial_block():
    assert len(chain_keys(list(range(10)), 4)) == 2


def test_array_tagged_batch_decodes():
    payload = msgpack.packb([1.5, [["BlockStored", [1, 2], None, list(range(8)), 4, None, "GPU"],
                                   ["BlockRemoved", [2], "GPU"], ["AllBlocksCleared"]], 0])
    batch = decode_batch(payload)
    assert batch.dp_rank == 0
    assert batch.events == (stored([1, 2], None, range(8)).__class__(
        block_hashes=(1, 2), parent_block_hash=None, token_ids=tuple(range(8)), block_size=4, medium="GPU"),
        BlockRemoved(block_hashes=(2,), medium="GPU"), AllBlocksCleared())


def test_map_tagged_batch_decodes_like_the_array_form():
    payload = msgpack.packb([1.5, [{"type": "BlockStored", "block_hashes": [1, 2], "parent_block_hash": None,
                                    "token_ids": list(range(8)), "block_size": 4, "lora_name": None,
                                    "medium": "GPU"},
                                   {"type": "BlockRemoved", "block_hashes": [2], "medium": "GPU"}]])
    events = decode_batch(payload).events
    assert isinstance(events[0], BlockStored) and events[0].block_hashes == (1, 2)
    assert events[1] == BlockRemoved(block_hashes=(2,), medium="GPU")


def test_byte_hashes_use_their_low_64_bits():
    digest = bytes(range(32))
    payload = msgpack.packb([0, [["BlockRemoved", [digest]]]])
    (event,) = decode_batch(payload).events
    assert isinstance(event, BlockRemoved)
    assert event.block_hashes == (int.from_bytes(digest[-8:], "big"),)


def test_unknown_event_kinds_are_ignored():
    assert decode_batch(msgpack.packb([0, [["SomethingNew", 1]]])).events == ()


@pytest.mark.parametrize("payload", [b"\xc1", msgpack.packb("x"), msgpack.packb([0, 5]), msgpack.packb([0, [7]])])
def test_garbage_batches_raise_decode_errors(payload):
    with pytest.raises(EventDecodeError):
        decode_batch(payload)
