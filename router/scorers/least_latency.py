"""AIBrix's least-latency: the pod with the least expected latency for a typical request.

    expected = queue_time + prefill_mean · guessP/avgP + decode_mean · guessG/avgG

queue_time, prefill_mean and decode_mean are the pod's mean queue, prefill and decode times
(vLLM `request_{queue,prefill,decode}_time_seconds`; queue time only on SGLang); avgP and avgG
its mean prompt and generation tokens per request; guessP and guessG the means of those over the
candidates that report them (AIBrix's defaults 10 and 100 when none does). So each pod's times
are rescaled to the same request size before they are compared. Means are taken over the last
scrape interval (AIBrix reads whole-lifetime histogram means, which react slowly). A time the
pod has not reported yet counts as 0, as AIBrix's mean of an empty histogram: an unmeasured pod
looks idle and gets the traffic that measures it. Scores are min-max inverted (AIBrix's
multi-strategy normalisation): the fastest pod 1, the slowest 0, all 1 when equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.endpoints import Endpoint
from router.scheduling import SchedulingContext, min_max_inverse


def _per_req(v: float | None, guess: float) -> float:
    return v if v is not None and v >= 1.0 else guess  # every request has a token; less is no data


def _guess(values: Sequence[float | None], default: float) -> float:
    known = [v for v in values if v is not None and v >= 1.0]
    return sum(known) / len(known) if known else default


def expected_latency_s(e: Endpoint, guess_prompt: float, guess_gen: float) -> float:
    m = e.metrics
    avg_p, avg_g = _per_req(m.prompt_tokens_per_req, guess_prompt), _per_req(m.gen_tokens_per_req, guess_gen)
    return ((m.queue_time_s or 0.0) + (m.prefill_time_s or 0.0) / avg_p * guess_prompt
            + (m.decode_time_s or 0.0) / avg_g * guess_gen)


@dataclass
class LeastLatencyScorer:
    name: str = "least-latency"
    default_prompt_tokens: float = 10.0
    default_gen_tokens: float = 100.0

    def score(self, ctx: SchedulingContext, endpoints: Sequence[Endpoint]) -> list[float]:
        gp = _guess([e.metrics.prompt_tokens_per_req for e in endpoints], self.default_prompt_tokens)
        gg = _guess([e.metrics.gen_tokens_per_req for e in endpoints], self.default_gen_tokens)
        return min_max_inverse([expected_latency_s(e, gp, gg) for e in endpoints])
