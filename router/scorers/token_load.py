"""llm-d's token-load-scorer: 1 - min(1, in-flight tokens / `queue_threshold_tokens`).

The threshold defaults to 4,194,304 (llm-d: 128 requests of 32K tokens). In-flight tokens are
the router's own count per pod (uncached prompt plus expected output of requests not yet
finished), fresh between scrapes. Unlike the `inflight` scorer, which is relative to the
busiest candidate, this score is absolute: two lightly loaded pods both score near 1, so the
scorer only separates pods once their backlogs are a real fraction of the threshold.
`add_request_tokens` also counts this request's uncached prompt on each pod, as llm-d's
newer inflight-load producer does (off by default, as the reference formula).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class TokenLoadScorer:
    name: str = "token-load"
    queue_threshold_tokens: int = 4_194_304
    add_request_tokens: bool = False

    def __post_init__(self) -> None:
        if self.queue_threshold_tokens <= 0:
            raise ValueError(f"queue_threshold_tokens: must be > 0, got {self.queue_threshold_tokens!r}")

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        limit = float(self.queue_threshold_tokens)
        out: list[float] = []
        for e in endpoints:
            tokens = float(e.inflight_tokens)
            if self.add_request_tokens:
                tokens += ctx.prompt_tokens * (1.0 - ctx.cached_fraction(e))
            out.append(1.0 if tokens <= 0 else 1.0 - min(1.0, tokens / limit))
        return out
