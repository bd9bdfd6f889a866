"""Failover across a scheduling decision's candidates: retries, then migration of broken streams.

`serve` walks the scheduler's order. A failure before the client saw anything (refused
connection, timeout, 5xx, 429, a body cut short) moves on to the next pod, up to the retry
policy's attempts. A stream that broke after the client got events is migrated: resent as
prompt + generated text to a pod that has not failed, up to the migration limit; if none is
left, the client gets an error event and the end of the stream, never a silent cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from router.endpoints import Endpoint
from router.request import ParsedRequest
from router.resilience import migration
from router.resilience.metrics import ResilienceMetrics
from router.resilience.retry import RetryPolicy, backoff_s, retryable

log = logging.getLogger("caldera.router.failover")


class StreamBroken(Exception):
    """The upstream stream ended before [DONE] after the client had been sent events."""

    def __init__(self, pod: str, reason: str) -> None:
        super().__init__(f"{pod}: {reason}")
        self.pod = pod
        self.reason = reason


class NoCandidate(Exception):
    """Every candidate was skipped before any attempt."""


Attempt = Callable[[Endpoint, bytes, "migration.StreamRelay | None"], Awaitable[Any]]


async def serve(ordered: Sequence[Endpoint], body: bytes, attempt: Attempt, policy: RetryPolicy,
                relay: migration.StreamRelay | None, parsed: ParsedRequest, model: str, migration_limit: int,
                metrics: ResilienceMetrics, server: str,
                classify: Callable[[BaseException], tuple[str, str, int] | None],
                tokenize: Callable[[Endpoint, str], Awaitable[list[int]]] | None = None) -> Any:
    """Run `attempt` on candidates in order; `classify` maps an exception to (pod, reason, status).

    `tokenize(pod, text)` gives a pod's token ids for text (for resuming token-id prompts).
    """
    failed: set[str] = set()
    tries = 0
    migrations = 0
    last: BaseException | None = None
    queue = list(ordered)
    while queue:
        ep = queue.pop(0)
        if ep.name in failed:
            continue
        try:
            return await attempt(ep, body, relay)
        except StreamBroken as exc:
            failed.add(ep.name)
            assert relay is not None
            log.warning("upstream attempt failed", extra={"pod": exc.pod, "reason": exc.reason,
                                                          "phase": "stream", "tokens_sent": relay.tokens})
            rest = [e for e in queue if e.name not in failed]
            why = None
            if migrations >= migration_limit:
                why = f"migration limit {migration_limit} reached"
            elif not rest:
                why = "no other pod to migrate to"
            if why is None:
                try:
                    ids = None
                    if migration.token_prompt(parsed):
                        if not relay.text:
                            ids = []
                        elif tokenize is not None:
                            ids = await tokenize(rest[0], relay.text)
                    body = migration.resume_body(parsed, model, relay, ids)
                except migration.NotMigratable as nm:
                    why = str(nm)
                except Exception as te:  # the target could not tokenize: treat it as failed too
                    why = f"tokenizing the generated text on {rest[0].name} failed: {te!r}"
            if why is not None:
                metrics.migrations.labels(server, "failed").inc()
                log.warning("stream cannot be migrated", extra={"pod": exc.pod, "reason": why})
                return await finish_broken(relay, f"upstream {exc.pod} broke mid-stream ({exc.reason}); {why}")
            migrations += 1
            relay.next_attempt()
            relay.pods.append(exc.pod)
            metrics.migrations.labels(server, "resumed").inc()
            log.info("migrating stream", extra={"from": exc.pod, "to": rest[0].name, "tokens_sent": relay.tokens})
            queue = rest
            continue
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            info = classify(exc)
            if info is None:
                raise
            pod, reason, status = info
            failed.add(ep.name)
            tries += 1
            last = exc
            log.warning("upstream attempt failed", extra={"pod": pod, "reason": reason, "status": status,
                                                          "attempt": tries})
            if relay_started(relay):
                assert relay is not None
                # A migration target failed before answering: the next one gets the same body.
                if any(e.name not in failed for e in queue):
                    metrics.retries.labels(server, "migration_target").inc()
                    continue
                metrics.migrations.labels(server, "failed").inc()
                return await finish_broken(relay, f"no pod could continue the stream ({pod}: {reason})")
            if not retryable(status, reason) or tries >= policy.attempts:
                raise
            kind = reason.split(" ", 1)[0]
            metrics.retries.labels(server, kind).inc()
            wait = backoff_s(policy, kind)
            if wait > 0:
                await asyncio.sleep(wait)
    if last is not None:
        raise last
    raise NoCandidate(f"{server}: no candidate endpoint")


async def engine_tokenize(session: aiohttp.ClientSession, ep: Endpoint, model: str, text: str) -> list[int]:
    """The pod's token ids for `text` (vLLM's and SGLang-compatible `POST /tokenize`)."""
    async with session.post(f"{ep.url}/tokenize", json={"model": model, "prompt": text, "add_special_tokens": False},
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        data = await resp.json(content_type=None)
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise RuntimeError("no token ids in the /tokenize answer")
    return tokens


async def finish_broken(relay: migration.StreamRelay, message: str) -> Any:
    """End a client stream that cannot be continued with an error event and [DONE]."""
    resp = relay.response
    tail = migration.closing_events(relay, message)
    try:
        if tail:
            await resp.write(tail)
        await resp.write_eof()
    except ConnectionResetError:
        pass
    return resp


def relay_started(relay: migration.StreamRelay | None) -> bool:
    return relay is not None and relay.response is not None
