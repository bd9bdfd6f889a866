"""LoRA affinity: 1.0 adapter active, 0.8 free adapter slot, 0.6 adapter waiting, else 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext


@dataclass
class LoraAffinityScorer:
    name: str = "lora-affinity"

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        lora = ctx.lora
        if lora is None:
            return [1.0] * len(endpoints)
        out: list[float] = []
        for e in endpoints:
            m = e.metrics
            if lora in m.running_loras or lora in e.loaded_loras:
                out.append(1.0)
            elif m.max_lora is None or len(m.running_loras | e.loaded_loras) < m.max_lora:
                out.append(0.8)
            elif lora in m.waiting_loras:
                out.append(0.6)
            else:
                out.append(0.0)
        return out
