"""llm-d's no-hit-lru-scorer: spread cold requests (no prefix hit anywhere) over the pods.

A cold request adds a whole prompt of new KV blocks, so sending cold requests to the pod
that least recently got one spreads cache growth evenly. For a cold request, pods that never
got one score highest (1.0, then decreasing in candidate order), then the rest from least to
most recently used: score = 1 - rank/(n - 1). A request with a hit anywhere scores 0.5 on
every pod (neutral), leaving the choice to the affinity scorers. So does a LoRA request: its
locality is the adapter, which `lora-affinity` weighs (rotating it would load the adapter on
every pod in turn).

The router calls `note_routed` for every pod it sends a request to (decode and prefill), which
stamps the pod when the request was cold.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext

_cold_seq = itertools.count(1)  # a sequence, not a clock: two cold requests never tie


def is_cold(ctx: SchedulingContext) -> bool:
    """No pod holds any block of this prompt, by either prefix index."""
    return not any(ctx.approx_match.values()) and not any(ctx.precise_match.values())


def note_routed(ctx: SchedulingContext, endpoint: Endpoint) -> None:
    if ctx.lora is None and is_cold(ctx):
        endpoint.last_cold_seq = next(_cold_seq)


@dataclass
class NoHitLRUScorer:
    name: str = "no-hit-lru"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        n = len(endpoints)
        if ctx.lora is not None or not is_cold(ctx):
            return [0.5] * n
        if n == 1:
            return [1.0]
        never = [i for i, e in enumerate(endpoints) if e.last_cold_seq == 0]
        used = sorted((i for i, e in enumerate(endpoints) if e.last_cold_seq != 0),
                      key=lambda i: endpoints[i].last_cold_seq)
        scores = [0.0] * n
        for rank, i in enumerate(never + used):
            scores[i] = 1.0 - rank / (n - 1)
        return scores
