"""Precise prefix-cache affinity from the engines' KV events, covered by routing history.

Events arrive only after the engine has computed and stored a prompt's blocks, which under
load is seconds after the routing decision; requests sharing a prefix that arrive meanwhile
would see no cache anywhere and scatter. So, as llm-d's speculative indexing does, the
score per pod is the larger of the event-confirmed fraction and the fraction the router
itself sent there recently (the approximate index). The approximate side also covers pods
or models without an event stream, or no tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class KVEventsScorer:
    name: str = "kv-events"
    fallback_to_approximate: bool = True

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        scores = [0.0] * len(endpoints)
        keys = ctx.precise_keys
        if keys:
            match = ctx.precise_match
            scores = [match.get(e.name, 0) / len(keys) for e in endpoints]
        if self.fallback_to_approximate and ctx.approx_hashes:
            total = len(ctx.approx_hashes)
            amatch = ctx.approx_match
            scores = [max(s, amatch.get(e.name, 0) / total) for s, e in zip(scores, endpoints, strict=True)]
        return scores
