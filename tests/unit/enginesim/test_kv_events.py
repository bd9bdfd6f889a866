"""KV events decoded by an independent pyzmq + msgpack subscriber, in both encodings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgpack
import pytest
import zmq

from enginesim.blocks import hash_blocks
from enginesim.testing import SimProcess, free_port, launch_sim, wait_until
from enginesim.tokenizer import get_tokenizer

TOK = get_tokenizer("whitespace")
END_SEQ = (-1).to_bytes(8, "big", signed=True)


def events_config(pub_port: int, replay_port: int) -> str:
    return json.dumps({"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{pub_port}",
                       "replay_endpoint": f"tcp://*:{replay_port}", "topic": "kv@{host}:{port}@{model}"})


class Subscriber:
    """An independent SUB socket that decodes every batch with plain msgpack."""

    def __init__(self, pub_port: int, replay_port: int) -> None:
        self.replay_port = replay_port
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"kv@")
        self.sock.connect(f"tcp://127.0.0.1:{pub_port}")
        self.messages: list[tuple[bytes, int, Any]] = []

    def drain(self, timeout_ms: int = 50) -> None:
        while self.sock.poll(timeout_ms):
            topic, seq, payload = self.sock.recv_multipart()
            assert len(seq) == 8
            self.messages.append((topic, int.from_bytes(seq, "big"), msgpack.unpackb(payload, raw=False)))

    def count(self) -> int:
        """Messages received so far, after draining what is waiting."""
        self.drain(20)
        return len(self.messages)

    def events(self) -> list[Any]:
        return [event for _, _, batch in self.messages for event in batch[1]]

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def complete(sim: SimProcess, prompt: str, max_tokens: int = 1) -> None:
    resp = httpx.post(sim.url + "/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens})
    assert resp.status_code == 200, resp.text


def connected(sim: SimProcess, sub: Subscriber) -> None:
    """Send distinct probe requests until the slow-joining subscriber sees a batch."""
    probes = iter(range(10_000))

    def seen() -> bool:
        complete(sim, " ".join(f"probe{next(probes)}" for _ in range(16)) + " x")
        sub.drain(20)
        return bool(sub.messages)

    wait_until(seen)


Events = tuple[SimProcess, Subscriber]


def events_sim(tmp_path_factory: pytest.TempPathFactory, encoding: str) -> Iterator[Events]:
    """One engine per encoding, shared by the module: a small cache (8 blocks) so evictions happen."""
    pub, replay = free_port(), free_port()
    sim = launch_sim(tmp_path_factory.mktemp(f"kv-{encoding}"), "--model", "sim-model", "--time-scale", "20",
                     "--block-size", "16", "--num-gpu-blocks", "8", "--kv-events-encoding", encoding,
                     "--kv-events-config", events_config(pub, replay))
    sub = Subscriber(pub, replay)
    try:
        connected(sim, sub)
        yield sim, sub
    finally:
        sub.close()
        sim.stop()


@pytest.fixture(scope="module")
def array_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Events]:
    yield from events_sim(tmp_path_factory, "array")


@pytest.fixture(scope="module")
def map_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Events]:
    yield from events_sim(tmp_path_factory, "map")


def find_stored(sub: Subscriber, hashes: list[int], key: Callable[[Any], list[int]]) -> Any:
    found: list[Any] = []

    def present() -> bool:
        sub.drain(20)
        found[:] = [e for e in sub.events() if key(e) == hashes]
        return bool(found)

    wait_until(present, timeout=5)
    return found[0]


def test_array_encoding_block_stored_matches_router_hashes(array_events: Events) -> None:
    sim, sub = array_events
    prompt = " ".join(f"arr{i}" for i in range(40))
    complete(sim, prompt)
    ids = TOK.encode(prompt)
    expected = hash_blocks(ids, 16)
    event = find_stored(sub, expected, lambda e: e[1] if e[0] == "BlockStored" else [])
    assert event == ["BlockStored", expected, None, ids[:32], 16, None, "GPU"]


def test_topic_and_batch_layout(array_events: Events) -> None:
    sim, sub = array_events
    topic, seq, batch = sub.messages[0]
    assert topic == f"kv@127.0.0.1:{sim.port}@sim-model".encode()
    assert isinstance(seq, int)
    assert isinstance(batch, list) and len(batch) == 3
    assert isinstance(batch[0], float) and isinstance(batch[1], list) and batch[2] == 0


def test_map_encoding_block_stored_is_a_tagged_map(map_events: Events) -> None:
    sim, sub = map_events
    prompt = " ".join(f"map{i}" for i in range(20))
    complete(sim, prompt)
    ids = TOK.encode(prompt)
    expected = hash_blocks(ids, 16)
    event = find_stored(sub, expected, lambda e: e.get("block_hashes", []) if e.get("type") == "BlockStored" else [])
    assert event == {"type": "BlockStored", "block_hashes": expected, "parent_block_hash": None,
                     "token_ids": ids[:16], "block_size": 16, "lora_id": None, "medium": "GPU", "lora_name": None}


def test_decode_blocks_are_stored_with_their_parent(array_events: Events) -> None:
    sim, sub = array_events
    prompt = " ".join(f"par{i}" for i in range(16))  # exactly one block; decode fills the second
    complete(sim, prompt, max_tokens=17)
    first = hash_blocks(TOK.encode(prompt), 16)

    def child_seen() -> bool:
        sub.drain(20)
        return any(e[0] == "BlockStored" and e[2] == first[-1] for e in sub.events())

    wait_until(child_seen, timeout=5)


def test_eviction_publishes_block_removed(array_events: Events) -> None:
    sim, sub = array_events
    victim = " ".join(f"victim{i}" for i in range(32))
    complete(sim, victim)
    victim_hashes = hash_blocks(TOK.encode(victim), 16)
    for round_ in range(4):
        complete(sim, " ".join(f"filler{round_}x{i}" for i in range(48)))

    def removed() -> bool:
        sub.drain(20)
        gone = {h for e in sub.events() if e[0] == "BlockRemoved" for h in e[1]}
        return set(victim_hashes) <= gone

    wait_until(removed, timeout=5)


def test_map_encoding_block_removed(map_events: Events) -> None:
    sim, sub = map_events
    for round_ in range(6):
        complete(sim, " ".join(f"evict{round_}x{i}" for i in range(48)))

    def removed() -> bool:
        sub.drain(20)
        return any(e.get("type") == "BlockRemoved" and e["medium"] == "GPU" for e in sub.events())

    wait_until(removed, timeout=5)


def test_reset_prefix_cache_publishes_all_blocks_cleared(array_events: Events) -> None:
    sim, sub = array_events
    assert httpx.post(sim.url + "/reset_prefix_cache").status_code == 200

    def cleared() -> bool:
        sub.drain(20)
        return ["AllBlocksCleared"] in sub.events()

    wait_until(cleared, timeout=5)


def replay(port: int, start: int) -> list[tuple[int, bytes]]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        sock.send_multipart([b"", start.to_bytes(8, "big")])
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not sock.poll(100):
                continue
            _, seq, payload = sock.recv_multipart()
            if seq == END_SEQ:
                return got
            got.append((int.from_bytes(seq, "big"), payload))
        raise AssertionError("no end-of-replay marker")
    finally:
        sock.close(0)
        ctx.term()


def test_replay_resends_missed_batches_from_a_sequence_number(array_events: Events) -> None:
    sim, early = array_events
    before = early.count()
    for i in range(3):
        complete(sim, " ".join(f"gap{i}x{j}" for j in range(20)))
    wait_until(lambda: early.count() >= before + 3, timeout=5)
    # A late subscriber missed everything so far: it asks the replay socket from seq 0.
    replayed = replay(early.replay_port, 0)
    assert [seq for seq, _ in replayed] == list(range(len(replayed)))
    live = {seq: batch for _, seq, batch in early.messages}
    for seq, payload in replayed:
        if seq in live:
            assert msgpack.unpackb(payload, raw=False) == live[seq]


def test_replay_from_a_later_sequence_skips_earlier_batches(map_events: Events) -> None:
    sim, sub = map_events
    before = sub.count()
    for i in range(3):
        complete(sim, " ".join(f"later{i}x{j}" for j in range(20)))
    wait_until(lambda: sub.count() >= before + 3, timeout=5)
    last_seq = max(seq for _, seq, _ in sub.messages)
    replayed = [seq for seq, _ in replay(sub.replay_port, last_seq)]
    assert replayed[0] == last_seq
    assert replayed == list(range(last_seq, last_seq + len(replayed)))
