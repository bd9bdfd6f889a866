"""Prefill failover for prefill/decode disaggregation.

The decode side of a P/D request goes through `failover.serve` like an aggregated request
(retries to the next decode pod before the client saw a byte, migration of a stream broken
mid-way). Each decode attempt first needs a prefill: `run_prefill` tries the prefill pods of
the decode pod's pdGroup in the scheduler's order, never one that already failed for this
request, within the same attempt budget as the aggregated path (`RetryPolicy.attempts`
failed prefills per request). When no prefill pod is left it raises `PrefillUnavailable`;
the caller then sends the request to the decode pod alone (engines that can prefill
themselves) or answers 503.

Only failures of the prefill itself are retried here: the exchange raises `PrefillFailed`
for those, and anything else (the decode pod's own failure, a client error) goes up
unchanged to `failover.serve`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from router.endpoints import Endpoint
from router.resilience.metrics import ResilienceMetrics
from router.resilience.retry import RetryPolicy, backoff_s, retryable

log = logging.getLogger("caldera.router.pd")

T = TypeVar("T")


class PrefillFailed(Exception):
    """One prefill attempt failed on `pod` (the decode pod is not to blame)."""

    def __init__(self, pod: str, reason: str, status: int = 502) -> None:
        super().__init__(f"{pod}: {reason}")
        self.pod = pod
        self.reason = reason
        self.status = status


class PrefillUnavailable(Exception):
    """No prefill pod of the group is left to try (all failed, none ready, or the budget is spent)."""

    def __init__(self, group: str | None, failures: dict[str, str], why: str) -> None:
        detail = "; ".join(f"{pod}: {reason}" for pod, reason in failures.items())
        super().__init__(f"no prefill pod of pdGroup {group!r} could serve ({why})" + (f": {detail}" if detail else ""))
        self.group = group
        self.failures = dict(failures)


@dataclass
class PrefillTracker:
    """Prefill failures of one request, over all its decode attempts."""

    policy: RetryPolicy
    failed: dict[str, str] = field(default_factory=dict)  # pod -> reason of its failure

    @property
    def spent(self) -> bool:
        return len(self.failed) >= self.policy.attempts

    def candidates(self, pool: Sequence[Endpoint]) -> list[Endpoint]:
        return [e for e in pool if e.name not in self.failed]


def mark_unreachable(ep: Endpoint, reason: str) -> None:
    """A pod that refused the connection leaves the `healthy` filter's set now.

    The scrape loop sets `healthy` back once the pod answers /metrics again, so this only
    closes the gap until the next scrape, during which other requests would try it too.
    """
    if reason.startswith("connect") and ep.healthy:
        ep.healthy = False
        log.warning("pod marked unhealthy until its next successful scrape", extra={"pod": ep.name, "reason": reason})


async def run_prefill(ordered: Sequence[Endpoint], exchange: Callable[[Endpoint], Awaitable[T]],
                      tracker: PrefillTracker, metrics: ResilienceMetrics, server: str,
                      group: str | None) -> tuple[Endpoint, T]:
    """`exchange(pod)` on prefill pods in order until one succeeds: (pod, its result).

    Raises PrefillUnavailable when every candidate failed or the attempt budget is spent;
    a non-retryable prefill failure (a client error such as a too-long prompt) goes up as
    PrefillFailed so the client gets it.
    """
    queue = tracker.candidates(ordered)
    why = "no ready prefill pod" if not ordered else "every prefill pod already failed"
    while queue and not tracker.spent:
        ep = queue.pop(0)
        try:
            return ep, await exchange(ep)
        except PrefillFailed as exc:
            if not retryable(exc.status, exc.reason):
                raise
            tracker.failed[ep.name] = exc.reason
            mark_unreachable(ep, exc.reason)
            log.warning("prefill attempt failed", extra={"pod": ep.name, "reason": exc.reason, "status": exc.status,
                                                         "attempt": len(tracker.failed), "server": server})
            why = f"attempt limit {tracker.policy.attempts} reached" if tracker.spent else "every prefill pod failed"
            if not queue or tracker.spent:
                break
            kind = exc.reason.split(" ", 1)[0]
            metrics.pd_prefill_retries.labels(server, kind).inc()
            wait = backoff_s(tracker.policy, kind)
            if wait > 0:
                await asyncio.sleep(wait)
    if tracker.spent and queue:
        why = f"attempt limit {tracker.policy.attempts} reached"
    raise PrefillUnavailable(group, tracker.failed, why)
