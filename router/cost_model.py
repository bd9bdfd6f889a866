"""Dynamo's KV-router cost model, as a scorer.

    cost = overlap_weight x prefill_blocks + decode_blocks

prefill_blocks: the pod's prefill backlog (uncached prompt tokens of requests routed to it
that have not produced a first token) plus this request's uncached blocks on that pod.
decode_blocks: the pod's active KV blocks (the larger of the KV the router's in-flight
requests add - their uncached prompt plus output tokens, since cached prefixes are shared -
and the engine's reported KV usage) plus the blocks this request adds there. The lowest cost wins;
as a scorer the cheapest pod scores 1 and the others fall with their extra cost over a range
padded by `slack_blocks`, so differences of a few blocks (noise for short prompts) do not
outweigh the other scorers the way plain min-max normalisation would. Temperature
sampling lives in `router.pickers.SoftmaxPicker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


def pod_cost(prompt_tokens: int, cached_fraction: float, endpoint: Endpoint, block_size: int,
             overlap_weight: float, max_tokens: int = 0, miss_penalty: float = 1.0) -> float:
    uncached = prompt_tokens * (1.0 - cached_fraction)
    prefill_blocks = (endpoint.inflight_prefill_tokens + miss_penalty * uncached) / block_size
    router_active = endpoint.inflight_tokens / block_size
    m = endpoint.metrics
    engine_active = m.kv_usage * m.num_gpu_blocks if m.num_gpu_blocks else 0.0
    decode_blocks = max(router_active, engine_active) + (uncached + max_tokens) / block_size
    return overlap_weight * prefill_blocks + decode_blocks


@dataclass
class CostModelScorer:
    name: str = "cost-model"
    overlap_weight: float = 1.0
    block_size: int = 16
    # > 1 charges a cache miss for the work it adds to the whole system (the prefix stored again,
    # other prefixes evicted), not only for this request's wait; 1 is Dynamo's cost.
    miss_penalty: float = 1.0

    def costs(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        tokens = ctx.prompt_tokens
        return [pod_cost(tokens, ctx.cached_fraction(e), e, e.metrics.block_size or self.block_size,
                         self.overlap_weight, ctx.request.max_tokens, self.miss_penalty) for e in endpoints]

    slack_blocks: float = 64.0

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        costs = self.costs(ctx, endpoints)
        if not costs:
            return []
        lo, hi = min(costs), max(costs)
        span = hi - lo + self.slack_blocks
        return [1.0 - (c - lo) / span for c in costs]
