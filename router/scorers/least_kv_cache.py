"""AIBrix's least-kv-cache (GPU + CPU KV-cache usage) and least-gpu-cache (GPU only): the pod
with the least usage.

Unlike `kv-usage` (absolute headroom, GPU only), the sum is min-max inverted over the
candidates, as AIBrix normalises scores: the emptiest pod 1, the fullest 0, all 1 when equal.
CPU usage counts 0 where the engine does not report it (vLLM V1 dropped `cpu_cache_usage_perc`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext, min_max_inverse


@dataclass
class LeastKVCacheScorer:
    name: str = "least-kv-cache"
    include_cpu: bool = True

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        cpu = 1.0 if self.include_cpu else 0.0
        return min_max_inverse([e.metrics.kv_usage + cpu * e.metrics.cpu_kv_usage for e in endpoints])


@dataclass
class LeastGPUCacheScorer(LeastKVCacheScorer):
    name: str = "least-gpu-cache"
    include_cpu: bool = False
