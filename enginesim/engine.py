"""The engine core: continuous batching over a paged, prefix-cached KV cache.

Each request is one coroutine driven by :meth:`Engine.generate`. The scheduler admits
waiting requests FIFO while fewer than ``max_num_seqs`` run, the LoRA batch limit
allows it and the KV cache has room (head-of-line blocking on KV, as in vLLM). An
admitted request pays its prefill (or KV transfer) on the virtual clock, then joins the
decode batch: a step clock releases one token to every decoding sequence per inter-token
interval; both prefill and step time scale with the current batch's load factor. A
decode that cannot get a new block is preempted (its blocks are freed, it re-queues at
the front and recomputes only what was evicted). The waiting queue is bounded: beyond
``max_waiting_queue_length`` requests are refused with :class:`QueueFull` (HTTP 429).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from enginesim import latency
from enginesim.blocks import extra_key, hash_block, hash_blocks
from enginesim.clock import Clock
from enginesim.generation import TokenStream
from enginesim.kvcache import BlockManager, KVEvent, OutOfBlocks
from enginesim.latency import Profile
from enginesim.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The waiting queue is at ``max_waiting_queue_length``."""


class EngineDraining(Exception):
    """The engine is shutting down and takes no new requests."""


@dataclass
class LoraAdapter:
    name: str
    path: str
    int_id: int
    base_model_name: str | None = None


@dataclass(eq=False)
class EngineRequest:
    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    lora: LoraAdapter | None = None
    seed: int | None = None
    cache_salt: str | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    remote_prefill: bool = False
    hold_blocks_after_finish: bool = False
    # Filled in by the engine.
    arrival: float = 0.0
    admitted_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    num_cached_tokens: int = 0
    num_transferred_tokens: int = 0
    output_ids: list[int] = field(default_factory=list)
    output_text: str = ""
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    preemptions: int = 0
    block_ids: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    committed_blocks: int = 0
    _admitted: asyncio.Future[None] | None = None
    _prefill_done: asyncio.Future[None] | None = None
    _prefill_left: int = 0
    _released: bool = False
    _hit_tokens: int = 0  # prefix-cache hit of the latest admission (re-admissions after preemption too)

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids


@dataclass(frozen=True)
class TokenOutput:
    token_id: int
    text: str
    finish_reason: str | None


class EngineObserver(Protocol):
    def on_prefix_lookup(self, queried_tokens: int, hit_tokens: int) -> None: ...

    def on_first_token(self, req: EngineRequest) -> None: ...

    def on_token(self, req: EngineRequest, interval: float) -> None: ...

    def on_finished(self, req: EngineRequest) -> None: ...

    def on_preemption(self, req: EngineRequest) -> None: ...

    def on_aborted(self, req: EngineRequest) -> None: ...


class NullObserver:
    def on_prefix_lookup(self, queried_tokens: int, hit_tokens: int) -> None:
        return None

    def on_first_token(self, req: EngineRequest) -> None:
        return None

    def on_token(self, req: EngineRequest, interval: float) -> None:
        return None

    def on_finished(self, req: EngineRequest) -> None:
        return None

    def on_preemption(self, req: EngineRequest) -> None:
        return None

    def on_aborted(self, req: EngineRequest) -> None:
        return None


@dataclass
class HeldBlocks:
    """Blocks a prefill keeps for a remote decode to pull (NIXL ``do_remote_decode``)."""

    request_id: str
    block_ids: list[int]
    num_tokens: int
    expires_at: float


class Engine:
    WAKE_TURN_SECONDS = 0.001  # target length of one event-loop turn of woken streams
    def __init__(
        self,
        profile: Profile,
        tokenizer: Tokenizer,
        clock: Clock,
        *,
        seed: int = 0,
        hash_seed: int = 0,
        max_waiting_queue_length: int = 1000,
        max_loras: int = 1,
        hold_timeout: float = 480.0,
        prefix_caching: bool = True,
        on_kv_event: Callable[[KVEvent], None] | None = None,
        observer: EngineObserver | None = None,
    ) -> None:
        self.profile = profile
        self.tokenizer = tokenizer
        self.clock = clock
        self.seed = seed
        self.hash_seed = hash_seed
        self.max_waiting_queue_length = max_waiting_queue_length
        self.max_loras = max_loras
        self.hold_timeout = hold_timeout
        self.prefix_caching = prefix_caching
        self.blocks = BlockManager(profile.num_gpu_blocks, profile.block_size, on_kv_event)
        self.observer: EngineObserver = observer or NullObserver()
        self.waiting: deque[EngineRequest] = deque()
        self.running: dict[str, EngineRequest] = {}
        self.held: dict[str, HeldBlocks] = {}
        self.draining = False
        self._ids = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()
        self._step_waiters: list[asyncio.Future[None]] = []
        self._step_task: asyncio.Task[None] | None = None
        self._prefilling: dict[str, EngineRequest] = {}
        self._rng = random.Random(seed)
        self._wake_slice = 16
        self._decoding: set[str] = set()

    # -- state -----------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def running_loras(self) -> Counter[str]:
        return Counter(r.lora.name for r in self.running.values() if r.lora is not None)

    def waiting_loras(self) -> list[str]:
        return sorted({r.lora.name for r in self.waiting if r.lora is not None})

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- request lifecycle ----------------------------------------------
    def prompt_hashes(self, req: EngineRequest, token_ids: list[int]) -> list[int]:
        lora_name = req.lora.name if req.lora else None
        return hash_blocks(token_ids, self.profile.block_size, lora_name, req.cache_salt, self.hash_seed)

    def submit(self, req: EngineRequest) -> AsyncGenerator[TokenOutput, None]:
        """Queue ``req`` now (or raise) and return the iterator of its output tokens.

        Raises :class:`EngineDraining`, :class:`QueueFull`, or ValueError (a request that
        can never fit the KV cache). Call :meth:`abort` when done with the iterator, in
        case it was never started or was left early.
        """
        if self.draining:
            raise EngineDraining("the engine is shutting down")
        needed = (len(req.prompt_ids) + req.max_tokens) // self.profile.block_size + 1
        if needed > self.blocks.num_blocks:
            raise ValueError(
                f"the request needs {needed} KV blocks but the cache has {self.blocks.num_blocks}"
            )
        req.arrival = self.clock.now()
        req.block_hashes = self.prompt_hashes(req, req.prompt_ids)
        self._idle.clear()
        req._admitted = asyncio.get_running_loop().create_future()
        self.waiting.append(req)
        self._schedule()
        if len(self.waiting) > self.max_waiting_queue_length and self.waiting[-1] is req:
            # It would have to wait and the queue is already full.
            self.waiting.pop()
            req._admitted = None
            if not self.running and not self.waiting:
                self._idle.set()
            raise QueueFull(
                f"the waiting queue is full ({self.max_waiting_queue_length} requests); retry later"
            )
        return self._run(req)

    async def generate(self, req: EngineRequest) -> AsyncIterator[TokenOutput]:
        """Submit and run ``req`` to completion, yielding each output token."""
        outputs = self.submit(req)
        try:
            async for out in outputs:
                yield out
        finally:
            self.abort(req)

    async def _run(self, req: EngineRequest) -> AsyncGenerator[TokenOutput, None]:
        seed = self.seed if req.seed is None else (self.seed * 1_000_003 + req.seed)
        stream = TokenStream(self.tokenizer, seed, req.prompt_ids)
        try:
            assert req._admitted is not None
            await req._admitted
            await self._prefill(req)
            last = self.clock.now()
            while True:
                token = stream.next_token()
                now = self.clock.now()
                if req.first_token_at is None:
                    req.first_token_at = now
                    self.observer.on_first_token(req)
                else:
                    self.observer.on_token(req, now - last)
                last = now
                finish = self._append(req, token)
                yield TokenOutput(token, self.tokenizer.decode_token(token), finish)
                if finish is not None:
                    break
                await self._grow(req)
                await self._next_step()
            req.finished_at = self.clock.now()
            self.observer.on_finished(req)
        finally:
            self.abort(req)

    def _ensure_stepping(self) -> None:
        if self._step_task is None or self._step_task.done():
            self._step_task = asyncio.get_running_loop().create_task(self._step_loop())

    async def _next_step(self) -> None:
        """Wait for the next engine step (one token per decoding sequence)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._step_waiters.append(fut)
        self._ensure_stepping()
        await fut

    async def _step_loop(self) -> None:
        """The engine clock: plan a step, let it elapse, release what it produced.

        Decoding sequences are released in slices with a loop turn between them, so
        hundreds of streams sharing a step never hold the event loop for long.
        """
        deadline = self.clock.now()
        # Decoding sequences keep the clock ticking even between their registrations, so the
        # time a stream takes to process its token does not stretch the step period.
        while self._step_waiters or self._prefilling or self._decoding:
            prefilling = list(self._prefilling.values())
            plan = latency.plan_step(self.profile, len(self.running), len(self._decoding),
                                     [r._prefill_left for r in prefilling])
            for r, take in zip(prefilling, plan.prefill_chunks, strict=True):
                r._prefill_left -= take
            duration = plan.duration
            if self.profile.inter_token_latency_std_dev > 0 and self._decoding:
                itl = latency.inter_token_time(self.profile, len(self.running))
                noisy = latency.jittered(itl, self.profile.inter_token_latency_std_dev, self._rng.gauss(0, 1))
                duration += noisy - itl
            # Keep the schedule through small delays; after a stall, restart it instead of bursting.
            deadline = max(deadline, self.clock.now() - 0.5 * duration) + duration
            await self.clock.sleep_until(deadline)
            for r in prefilling:
                if r._prefill_left > 0 or self._prefilling.get(r.request_id) is not r:
                    continue  # still prefilling, or aborted during the step
                del self._prefilling[r.request_id]
                if r._prefill_done is not None and not r._prefill_done.done():
                    r._prefill_done.set_result(None)
            self._schedule()
            waiters, self._step_waiters = self._step_waiters, []
            start = 0
            while start < len(waiters):
                for fut in waiters[start : start + self._wake_slice]:
                    if not fut.done():
                        fut.set_result(None)
                start += self._wake_slice
                if start < len(waiters):
                    # The woken streams run in the next loop turn; size slices so a turn stays
                    # near WAKE_TURN_SECONDS (their socket writes dominate and vary with load).
                    t0 = time.perf_counter()
                    await asyncio.sleep(0)
                    turn = max(time.perf_counter() - t0, 1e-6)
                    self._wake_slice = max(1, min(256, int(self._wake_slice * self.WAKE_TURN_SECONDS / turn)))

    def _append(self, req: EngineRequest, token: int) -> str | None:
        req.output_ids.append(token)
        text = self.tokenizer.decode_token(token)
        req.output_text += text
        n = len(req.prompt_ids) + len(req.output_ids)
        bs = self.profile.block_size
        if n % bs == 0:
            self._commit_full_blocks(req)
        if token in req.stop_token_ids:
            req.finish_reason, req.stop_reason = "stop", token
        elif req.stop and any(s in req.output_text for s in req.stop):
            req.finish_reason = "stop"
            req.stop_reason = next(s for s in req.stop if s in req.output_text)
        elif len(req.output_ids) >= req.max_tokens:
            req.finish_reason = "length"
        return req.finish_reason

    def _commit_full_blocks(self, req: EngineRequest) -> None:
        """Register every newly full block of the request's tokens."""
        tokens = req.all_ids
        bs = self.profile.block_size
        n_full = min(len(tokens) // bs, len(req.block_ids))
        if n_full <= req.committed_blocks or not self.prefix_caching:
            return
        lora_name = req.lora.name if req.lora else None
        while len(req.block_hashes) < n_full:
            i = len(req.block_hashes)
            parent = req.block_hashes[-1] if req.block_hashes else None
            extra = extra_key(lora_name, req.cache_salt, first_block=(i == 0))
            req.block_hashes.append(hash_block(parent, tokens[i * bs : (i + 1) * bs], extra, self.hash_seed))
        start = req.committed_blocks
        parent_hash = req.block_hashes[start - 1] if start > 0 else None
        self.blocks.commit(
            req.block_ids[start:n_full],
            req.block_hashes[start:n_full],
            tokens[start * bs : n_full * bs],
            parent_hash,
            req.lora.int_id if req.lora else None,
            lora_name,
        )
        req.committed_blocks = n_full

    async def _admit(self, req: EngineRequest, front: bool) -> None:
        loop = asyncio.get_running_loop()
        req._admitted = loop.create_future()
        if front:
            self.waiting.appendleft(req)
        else:
            self.waiting.append(req)
        self._schedule()
        await req._admitted

    async def _prefill(self, req: EngineRequest) -> None:
        """Fixed overhead (or the KV transfer), then the uncached prompt through the engine steps."""
        tokens = len(req.prompt_ids) + len(req.output_ids)
        uncached = tokens - req._hit_tokens
        start = req.admitted_at if req.admitted_at is not None else self.clock.now()
        if req.remote_prefill and req.preemptions == 0:
            req.num_transferred_tokens = uncached
            await self.clock.sleep_until(start + latency.transfer_time(self.profile, uncached))
            work = 1  # the last prompt token is always computed locally
        else:
            if req.preemptions == 0:
                overhead = latency.jittered(self.profile.prefill_overhead, self.profile.prefill_time_std_dev,
                                            self._rng.gauss(0, 1))
                await self.clock.sleep_until(start + overhead)
            work = max(1, uncached)
        req._prefill_left = work
        req._prefill_done = asyncio.get_running_loop().create_future()
        self._prefilling[req.request_id] = req
        self._ensure_stepping()
        await req._prefill_done
        self._decoding.add(req.request_id)
        self._commit_full_blocks(req)

    async def _grow(self, req: EngineRequest) -> None:
        """Make room for the next token; preempt and re-admit if the cache is full."""
        needed = (len(req.prompt_ids) + len(req.output_ids)) // self.profile.block_size + 1
        if needed <= len(req.block_ids):
            return
        try:
            req.block_ids.extend(self.blocks.allocate(needed - len(req.block_ids)))
            return
        except OutOfBlocks:
            pass
        req.preemptions += 1
        self.observer.on_preemption(req)
        log.debug("preempting %s: KV cache full", req.request_id)
        self._drop_blocks(req)
        del self.running[req.request_id]
        self._decoding.discard(req.request_id)
        await self._admit(req, front=True)
        await self._prefill(req)

    def _try_allocate(self, req: EngineRequest) -> bool:
        tokens = req.all_ids
        bs = self.profile.block_size
        if req.output_ids:
            req.block_hashes = self.prompt_hashes(req, tokens)
        # The last token is always recomputed, so at most len-1 tokens can hit.
        hashes = req.block_hashes[: (len(tokens) - 1) // bs]
        matched = self.blocks.match_prefix(hashes) if self.prefix_caching else []
        needed = (len(tokens) + bs) // bs  # room for every token plus the next one
        fresh = needed - len(matched)
        if not self.blocks.can_allocate(fresh, matched):
            return False
        self.blocks.touch(matched)
        req.block_ids = matched + self.blocks.allocate(fresh)
        req.committed_blocks = len(matched)
        req._hit_tokens = len(matched) * bs
        req._prefill_left = 1 if req.remote_prefill and req.preemptions == 0 else max(1, len(tokens) - req._hit_tokens)
        del req.block_hashes[len(tokens) // bs :]
        if req.preemptions == 0:
            req.num_cached_tokens = len(matched) * bs
            self.observer.on_prefix_lookup(len(tokens), req.num_cached_tokens)
        # Like vLLM's allocate_slots, the full blocks of the tokens being scheduled are cached
        # now (and announced with BlockStored), so a request scheduled after this one reuses them.
        self._commit_full_blocks(req)
        return True

    def _lora_allowed(self, req: EngineRequest, active: Counter[str]) -> bool:
        if req.lora is None or req.lora.name in active:
            return True
        return len(active) < self.max_loras

    def _prefill_backlog(self) -> int:
        """Prompt tokens admitted requests have still to compute (their claim on coming steps)."""
        return sum(r._prefill_left for r in self.running.values() if r.request_id not in self._decoding)

    def _schedule(self) -> None:
        # vLLM schedules a waiting request only into a step with token budget left, and looks
        # up its prefix then; so a request queued behind another with the same prefix is
        # admitted once that prefix is scheduled and hits it, instead of computing it twice.
        while (self.waiting and len(self.running) < self.profile.max_num_seqs
               and self._prefill_backlog() < self.profile.max_num_batched_tokens - len(self._decoding)):
            active = self.running_loras()
            pick = next((r for r in self.waiting if self._lora_allowed(r, active)), None)
            if pick is None or not self._try_allocate(pick):
                return
            self.waiting.remove(pick)
            self.running[pick.request_id] = pick
            pick.admitted_at = self.clock.now()
            if pick._admitted is not None and not pick._admitted.done():
                pick._admitted.set_result(None)

    def _drop_blocks(self, req: EngineRequest) -> None:
        if req.block_ids:
            self.blocks.free(req.block_ids)
            req.block_ids = []
            req.committed_blocks = 0

    def abort(self, req: EngineRequest) -> None:
        """Release everything ``req`` holds; idempotent, safe at any stage."""
        if req._admitted is None or req._released:
            return
        req._released = True
        if req.finish_reason is None:
            self.observer.on_aborted(req)
        if req in self.waiting:
            self.waiting.remove(req)
        if self._prefilling.get(req.request_id) is req:
            del self._prefilling[req.request_id]
        if self.running.get(req.request_id) is req:
            self._decoding.discard(req.request_id)
            del self.running[req.request_id]
            if req.hold_blocks_after_finish and req.finish_reason is not None:
                self.held[req.request_id] = HeldBlocks(
                    req.request_id, req.block_ids, len(req.prompt_ids), self.clock.now() + self.hold_timeout
                )
                req.block_ids = []
                asyncio.get_running_loop().call_later(
                    self.hold_timeout / self.clock.time_scale, self.release_held, req.request_id
                )
            else:
                self._drop_blocks(req)
        self._schedule()
        if not self.running and not self.waiting:
            self._idle.set()

    def release_held(self, request_id: str) -> HeldBlocks | None:
        """Free the blocks a finished prefill kept for its remote decode."""
        held = self.held.pop(request_id, None)
        if held is not None:
            self.blocks.free(held.block_ids)
            self._schedule()
        return held

    def reset_prefix_cache(self) -> bool:
        return self.blocks.reset_prefix_cache()

    def new_request_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"
