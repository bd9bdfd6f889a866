"""Retries before the client has seen a byte: which failures to retry, how often, how long to wait.

A ModelServer's `trafficPolicy.retry` (attempts, retryInterval) and `timeout` win over the
router-wide defaults. Attempts go to the next candidate of the scheduling decision, never
twice to a pod that just failed; the interval is waited only between attempts on one pod
set, never after a connection refusal (the next pod is tried at once: nothing was sent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from router.routing import Server

T = TypeVar("T")

# Upstream statuses worth another pod: the engine is overloaded, draining or broken.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # total tries, the first included
    interval_s: float
    timeout_s: float | None  # until the response head arrives


def policy_for(server: Server, default_attempts: int, default_timeout_s: float | None) -> RetryPolicy:
    """The server's trafficPolicy when it sets retries, else the router default (first try + retries)."""
    retries = server.retry_attempts if server.retry_attempts > 0 else default_attempts
    return RetryPolicy(attempts=1 + max(0, retries), interval_s=server.retry_interval_s,
                       timeout_s=server.timeout_s or default_timeout_s)


def retryable(status: int, reason: str) -> bool:
    """Connect failures, timeouts, broken bodies and retryable statuses; never client errors."""
    if status in RETRYABLE_STATUSES:
        return True
    return status >= 500 and reason != "stream broken"


def candidates(ordered: Sequence[T], attempts: int) -> list[T]:
    """The pods to try, in the scheduler's order, at most `attempts`."""
    return list(ordered[: max(1, attempts)])


def backoff_s(policy: RetryPolicy, failure: str) -> float:
    """Wait before the next attempt: none after a refused connection, the interval otherwise."""
    return 0.0 if failure == "connect" else policy.interval_s
