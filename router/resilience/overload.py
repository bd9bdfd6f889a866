"""Overload rejection: refuse with 503 + Retry-After when every endpoint is past its busy thresholds.

As Dynamo's busy thresholds (KV-block usage, prefill tokens) and llm-d's saturation
detector: a pod is busy when its fresh engine metrics or the router's own accounting say
so; metrics older than `staleness_s` only count through the router's own numbers. When
every candidate is busy, queueing one more request only lengthens every queue, so the
router answers at once and holds nothing for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from router.endpoints import Endpoint


@dataclass(frozen=True)
class BusyThresholds:
    max_kv_usage: float | None = None  # 0..1 of the engine's KV blocks
    max_waiting: float | None = None  # requests in the engine's waiting queue
    max_inflight: int | None = None  # the router's own in-flight requests to the pod
    max_prefill_tokens: int | None = None  # the router's uncached prompt tokens not yet past first token
    staleness_s: float = 5.0

    @cached_property  # checked on every request
    def enabled(self) -> bool:
        return any(v is not None for v in (self.max_kv_usage, self.max_waiting, self.max_inflight,
                                           self.max_prefill_tokens))


def busy_reason(ep: Endpoint, t: BusyThresholds, now: float) -> str | None:
    """Why the pod is busy, or None."""
    if t.max_inflight is not None and ep.inflight_requests >= t.max_inflight:
        return f"inflight {ep.inflight_requests} >= {t.max_inflight}"
    if t.max_prefill_tokens is not None and ep.inflight_prefill_tokens >= t.max_prefill_tokens:
        return f"prefill tokens {ep.inflight_prefill_tokens} >= {t.max_prefill_tokens}"
    m = ep.metrics
    if now - m.scraped_at > t.staleness_s:
        return None
    if t.max_kv_usage is not None and m.kv_usage >= t.max_kv_usage:
        return f"kv usage {m.kv_usage:.2f} >= {t.max_kv_usage}"
    if t.max_waiting is not None and m.waiting >= t.max_waiting:
        return f"waiting {m.waiting:g} >= {t.max_waiting:g}"
    return None


def all_busy(endpoints: Sequence[Endpoint], t: BusyThresholds, now: float | None = None) -> dict[str, str] | None:
    """Each pod's busy reason when every one is busy; None when any can take the request."""
    if not t.enabled or not endpoints:
        return None
    now = time.time() if now is None else now
    reasons: dict[str, str] = {}
    for ep in endpoints:
        reason = busy_reason(ep, t, now)
        if reason is None:
            return None
        reasons[ep.name] = reason
    return reasons
