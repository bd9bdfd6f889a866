"""SGLang's cache-aware match, as a scorer: the matched fraction only above `cache_threshold`.

SGLang sends a request to the best-matching worker when its match rate exceeds
`cache_threshold` (default 0.3) and to the least loaded worker otherwise. Scoring each pod's
matched fraction of the prompt (the router's approximate index, as SGLang's own radix tree
records what the router sent) and 0 at or below the threshold gives the same choice when this
scorer outweighs a load scorer by more than the smallest possible match difference (one block
in `prefixIndex.maxBlocks`): the `sglang-cache-aware` profile weighs it 1000 against 1. SGLang
matches characters, this index 64-byte blocks (about 16 tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class CacheAwareScorer:
    name: str = "cache-aware"
    cache_threshold: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.cache_threshold <= 1.0:
            raise ValueError(f"cache_threshold: must be within [0, 1], got {self.cache_threshold!r}")

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        total = len(ctx.approx_hashes)
        if total == 0:
            return [0.0] * len(endpoints)
        match = ctx.approx_match
        rates = [match.get(e.name, 0) / total for e in endpoints]
        return [r if r > self.cache_threshold else 0.0 for r in rates]
