"""AIBrix's throughput strategy: the pod with the least 2·avg prompt + avg generation tokens.

Per request means of the pod's prompt and generation tokens (vLLM `request_{prompt,generation}_tokens`
histograms; SGLang token counters over `num_requests_total`), prompt tokens counted twice as
"twice as expensive" as generated ones. Means are over the last scrape interval; a pod that has
not reported counts 0, as an empty histogram in AIBrix. Min-max inverted: the lightest pod 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext, min_max_inverse


@dataclass
class ThroughputScorer:
    name: str = "throughput"
    prompt_weight: float = 2.0

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        return min_max_inverse([self.prompt_weight * (e.metrics.prompt_tokens_per_req or 0.0)
                                + (e.metrics.gen_tokens_per_req or 0.0) for e in endpoints])
