"""The latency model: profiles and pure timing functions (virtual seconds).

The engine runs in steps, like vLLM with chunked prefill. A step carries one token for
every decoding sequence plus up to ``max_num_batched_tokens`` minus that many prompt
tokens of the requests being prefilled, and lasts
``inter_token_latency * load factor`` (if anything decodes) ``+ prefill tokens *
time_per_prefill_token``. So alone, time to first token = ``prefill_overhead`` (a fixed
per-request latency off the GPU) + uncached prompt tokens * ``time_per_prefill_token``,
inter-token latency = ``inter_token_latency``; together, long prefills stretch everyone's
steps (the interference prefill/decode disaggregation removes). The load factor grows
linearly from 1 (one running sequence) to ``time_factor_under_load`` (``max_num_seqs``
running), the way a real engine slows as the batch fills (llm-d-inference-sim's
``time-factor-under-load``).
A decode that receives its KV cache from a prefill engine pays
``kv_transfer_latency + tokens * kv_transfer_time_per_token`` instead of the prefill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    time_per_prefill_token: float  # seconds per uncached prompt token
    prefill_overhead: float  # seconds per prefill
    inter_token_latency: float  # seconds per output token at batch size 1
    time_factor_under_load: float  # ITL/prefill multiplier at a full batch (>= 1)
    max_num_seqs: int
    num_gpu_blocks: int
    block_size: int = 16
    max_model_len: int = 32768
    kv_transfer_latency: float = 0.005
    kv_transfer_time_per_token: float = 0.00001
    max_num_batched_tokens: int = 8192  # token budget of one engine step (chunked prefill)
    inter_token_latency_std_dev: float = 0.0  # jitter of each step's decode part
    prefill_time_std_dev: float = 0.0  # jitter of each request's prefill overhead

    def with_overrides(self, **overrides: Any) -> Profile:
        """A copy with the non-None overrides applied, validated."""
        changed = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        changed.validate()
        return changed

    def validate(self) -> None:
        for field in ("time_per_prefill_token", "prefill_overhead", "inter_token_latency",
                      "kv_transfer_latency", "kv_transfer_time_per_token", "inter_token_latency_std_dev",
                      "prefill_time_std_dev"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field}: must be >= 0, got {getattr(self, field)}")
        if self.time_factor_under_load < 1:
            raise ValueError(f"time_factor_under_load: must be >= 1, got {self.time_factor_under_load}")
        for field in ("max_num_seqs", "num_gpu_blocks", "block_size", "max_model_len", "max_num_batched_tokens"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field}: must be >= 1, got {getattr(self, field)}")


# Published llm-d-inference-sim profiles; KV capacity: Llama-3-8B on one H100 holds about
# 500K tokens (31,250 blocks of 16), Llama-3-70B over 8 H100 about 1.3M tokens.
PROFILES: dict[str, Profile] = {
    "8b-h100": Profile("8b-h100", 0.00025, 0.030, 0.012, 2.0, 16, 31250,
                       kv_transfer_latency=0.005, kv_transfer_time_per_token=0.00001),
    "70b-h100-tp8": Profile("70b-h100-tp8", 0.0005, 0.080, 0.025, 3.0, 64, 83000,
                            kv_transfer_latency=0.008, kv_transfer_time_per_token=0.00002),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile: unknown profile {name!r}; expected one of {sorted(PROFILES)}") from None


def jittered(mean: float, std_dev: float, gauss: float) -> float:
    """``mean + std_dev * gauss`` clamped to +-70 % of the mean (llm-d-inference-sim's bound)."""
    if std_dev <= 0 or mean <= 0:
        return mean
    return min(max(mean + std_dev * gauss, 0.3 * mean), 1.7 * mean)


def load_factor(profile: Profile, running: int) -> float:
    """Slow-down of GPU-bound work with ``running`` sequences in the batch."""
    if profile.max_num_seqs <= 1 or running <= 1:
        return 1.0
    fill = min(running - 1, profile.max_num_seqs - 1) / (profile.max_num_seqs - 1)
    return 1.0 + (profile.time_factor_under_load - 1.0) * fill


def prefill_time(profile: Profile, uncached_tokens: int) -> float:
    """Time to first token of a request alone on the engine."""
    return profile.prefill_overhead + uncached_tokens * profile.time_per_prefill_token


@dataclass(frozen=True)
class StepPlan:
    duration: float
    prefill_chunks: list[int]  # prompt tokens taken from each prefilling request, in queue order


def plan_step(profile: Profile, running: int, decoding: int, prefill_left: Sequence[int]) -> StepPlan:
    """One engine step: a token per decoding sequence, then prompt chunks FIFO within the budget."""
    budget = max(0, profile.max_num_batched_tokens - decoding)
    chunks: list[int] = []
    for left in prefill_left:
        take = min(left, budget)
        chunks.append(take)
        budget -= take
    duration = inter_token_time(profile, running) if decoding else 0.0
    return StepPlan(duration + sum(chunks) * profile.time_per_prefill_token, chunks)


def inter_token_time(profile: Profile, running: int) -> float:
    return profile.inter_token_latency * load_factor(profile, running)


def transfer_time(profile: Profile, tokens: int) -> float:
    return profile.kv_transfer_latency + tokens * profile.kv_transfer_time_per_token
