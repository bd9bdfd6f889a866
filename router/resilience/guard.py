"""The guard: what a request passes before it may reach an engine, and what it owes afterwards.

Before the body is read (an aiohttp middleware, on every inference path, the provider-only
/v1/messages and /v1/responses included): drain (503), authentication (401) and the
router-wide admission bound (503), so refused requests cost almost nothing and never reach
an engine or a provider. After routing (`enter`, engine targets only): the route's token
rate limit (429), overload rejection when every endpoint is busy (503), and the per-user fair
queue. `leave` charges the output tokens and releases the fair slot. Refusals are
OpenAI-style JSON errors with Retry-After and the limit headers; the server's own code only
calls `enter` and `leave`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from router.endpoints import Endpoint
from router.limits import ratelimit
from router.limits.auth import AuthConfig, Authenticator, AuthError
from router.limits.fairness import ANONYMOUS, Fairness, FairnessWeights, QueueFull, QueueTimeout
from router.limits.settings import FairnessConfig
from router.request import CHAT_COMPLETIONS, COMPLETIONS, ParsedRequest, RequestError
from router.resilience.drain import Drain
from router.resilience.metrics import ResilienceMetrics
from router.resilience.overload import all_busy
from router.resilience.settings import ResilienceConfig
from router.routing import ProviderDecision, Route, RouteDecision

log = logging.getLogger("caldera.router.guard")

USER_KEY = web.RequestKey("caldera.user", str)
HEADERS_KEY = web.RequestKey("caldera.headers", dict[str, str])
# Every path that can reach an engine or a hosted provider: /v1/messages and /v1/responses are
# served only by ExternalModelProvider targets (router.providers), but drain, authentication and
# the admission bound apply to them all the same.
_INFERENCE = frozenset({COMPLETIONS, CHAT_COMPLETIONS, "/v1/messages", "/v1/responses"})


class Rejected(RequestError):
    """A refusal with response headers (Retry-After, rate-limit headers)."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None,
                 err_type: str = "invalid_request_error") -> None:
        super().__init__(status, message, code=code, err_type=err_type)
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body(), content_type="application/json",
                            headers=self.headers)


@dataclass
class Ticket:
    """What one admitted request holds: its user, its limit and its fair-queue slot."""

    user: str
    model: str
    input_tokens: int
    limit: ratelimit.RouteLimit | None = None
    gated: bool = False


class Guard:
    def __init__(self, config: ResilienceConfig, registry: CollectorRegistry, auth: AuthConfig | None = None,
                 fairness: FairnessConfig | None = None) -> None:
        self.config = config
        self.metrics = ResilienceMetrics(registry)
        self.drain = Drain(config.drain_grace_s)
        self.auth = Authenticator(auth) if auth is not None else None
        self.fairness_config = fairness
        self.fairness = Fairness(
            fairness.max_concurrent, fairness.reserved_slots, fairness.window_s,
            FairnessWeights(fairness.input_weight, fairness.output_weight, fairness.token_weight,
                            fairness.request_weight), fairness.max_queue) if fairness is not None else None
        self.thresholds = config.overload.thresholds()
        self.limiter = ratelimit.RateLimiter(
            on_unavailable=lambda route: self.metrics.rate_limit_unavailable.labels(route).inc())
        self._limits: dict[int, tuple[Route, ratelimit.RouteLimit | None]] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        self.held = 0
        self.metrics.held.set_function(lambda: self.held)  # read when scraped, not set per request
        self._overload_logged = 0.0

    # ---- wiring --------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        app.on_response_prepare.append(self._add_headers)
        app.on_cleanup.append(self._cleanup)

    async def _cleanup(self, app: web.Application) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.limiter.close()

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        extra = request.get(HEADERS_KEY)
        if extra:
            for k, v in extra.items():
                response.headers.setdefault(k, v)

    def _refuse(self, reason: str, status: int, message: str, headers: dict[str, str] | None = None,
                err_type: str = "invalid_request_error") -> Rejected:
        self.metrics.rejections.labels(reason, str(status)).inc()
        return Rejected(status, message, reason, headers, err_type)

    def _retry_after(self) -> dict[str, str]:
        return {"retry-after": str(self.config.retry_after_s)}

    # ---- before the body is read -----------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path not in _INFERENCE or request.method != "POST":
            if self.drain.draining and request.path == "/readyz":
                return web.Response(status=503, text="draining")
            return await handler(request)
        if self.drain.draining:
            return self._refuse("draining", 503, "the router is shutting down; retry on another replica",
                                {**self._retry_after(), "connection": "close"}, "server_error").response()
        user = ANONYMOUS
        if self.auth is not None:
            try:
                identity = self.auth.authenticate(request.headers)
            except AuthError as exc:
                return self._refuse("unauthorized", 401, str(exc), {"www-authenticate": 'Bearer realm="caldera"'},
                                    "authentication_error").response()
            user = identity.user
        elif self.fairness_config is not None:
            for name in self.fairness_config.user_headers:
                value = request.headers.get(name)
                if value:
                    user = value
                    break
        request[USER_KEY] = user
        limit = self.config.max_concurrent_requests
        if limit is not None and self.held >= limit:
            return self._refuse("admission", 503, f"the router holds {self.held} requests (limit {limit})",
                                self._retry_after(), "server_error").response()
        self.held += 1
        self.drain.enter()
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self.metrics.cancelled.inc()
            raise
        finally:
            self.held -= 1
            self.drain.leave()

    def begin_drain(self) -> None:
        self.drain.begin()
        self.metrics.draining.set(1)

    # ---- after routing ---------------------------------------------------------------------

    def _limit_of(self, decision: RouteDecision | ProviderDecision) -> ratelimit.RouteLimit | None:
        """The route's compiled limit, compiled once per route object (routes rebuild on change)."""
        route = decision.route
        cached = self._limits.get(id(route))
        if cached is not None and cached[0] is route:
            return cached[1]
        try:
            limit = ratelimit.compile_limit(route.key, route.rate_limit)
        except ValueError as exc:
            log.warning("ignoring invalid rate limit", extra={"reason": str(exc)})
            limit = None
        if len(self._limits) > 4096:  # routes of superseded tables
            self._limits.clear()
        self._limits[id(route)] = (route, limit)
        return limit

    async def enter(self, request: web.Request, parsed: ParsedRequest, decision: RouteDecision | ProviderDecision,
                    endpoints: Sequence[Endpoint]) -> Ticket:
        """Rate limit, overload and fair queue; raises Rejected. Pair with `leave`."""
        try:
            return await self._enter(request, parsed, decision, endpoints)
        except Rejected as exc:
            request[HEADERS_KEY] = {**request.get(HEADERS_KEY, {}), **exc.headers}
            raise

    async def _enter(self, request: web.Request, parsed: ParsedRequest, decision: RouteDecision | ProviderDecision,
                     endpoints: Sequence[Endpoint]) -> Ticket:
        user = request.get(USER_KEY, ANONYMOUS)
        model = decision.route.model_name or parsed.model
        ticket = Ticket(user=user, model=model, input_tokens=parsed.estimated_prompt_tokens)
        limit = self._limit_of(decision)
        if limit is not None:
            vin, vout = await self.limiter.admit(limit, ticket.input_tokens)
            hdrs = ratelimit.headers(limit, vin, vout)
            request[HEADERS_KEY] = hdrs
            refused = [(k, v) for k, v in (("input", vin), ("output", vout)) if v is not None and not v.allowed]
            if refused:
                scope = "global" if limit.redis_address else "local"
                for kind, _ in refused:
                    self.metrics.rate_limited.labels(limit.route, kind, scope).inc()
                kinds = " and ".join(k for k, _ in refused)
                raise self._refuse("rate_limited", 429, f"rate limit of route {limit.route} exceeded: {kinds} "
                                   f"tokens per {limit.unit}", hdrs, "rate_limit_error")
            ticket.limit = limit
        busy = all_busy(endpoints, self.thresholds)
        if busy is not None:
            now = time.monotonic()
            if now - self._overload_logged > 1.0:  # at most one line a second under a flood
                self._overload_logged = now
                log.warning("overloaded: every endpoint is busy", extra={"model": model, "endpoints": busy})
            raise self._refuse("overloaded", 503, f"every endpoint of {_target(decision)} is busy; retry later",
                               self._retry_after(), "server_error")
        if self.fairness is not None:
            await self._queue(request, ticket)
        return ticket

    async def _queue(self, request: web.Request, ticket: Ticket) -> None:
        assert self.fairness is not None and self.fairness_config is not None
        gate = self.fairness.gate(ticket.model)
        self.fairness.charge(ticket.user, ticket.input_tokens, 0, requests=1)
        size = self.metrics.queue_size.labels(ticket.model)
        size.set(gate.queued + 1)
        try:
            waited = await gate.acquire(ticket.user, self.fairness_config.queue_timeout_s)
        except QueueFull as exc:
            raise self._refuse("queue_full", 503, str(exc), self._retry_after(), "server_error") from None
        except QueueTimeout as exc:
            raise self._refuse("queue_timeout", 504, str(exc), None, "server_error") from None
        finally:
            size.set(gate.queued)
        ticket.gated = True
        request[HEADERS_KEY] = {**request.get(HEADERS_KEY, {}), "x-caldera-queue-wait-ms": str(round(waited * 1e3))}
        self.metrics.queue_wait.labels(ticket.model).observe(waited)
        self.metrics.queue_inflight.labels(ticket.model).set(gate.inflight)

    def leave(self, ticket: Ticket | None, completion_tokens: int) -> None:
        """Charge what the request produced and hand its fair slot on."""
        if ticket is None:
            return
        if ticket.gated and self.fairness is not None:
            gate = self.fairness.gate(ticket.model)
            gate.release(ticket.user)
            self.fairness.charge(ticket.user, 0, completion_tokens)
            self.metrics.queue_inflight.labels(ticket.model).set(gate.inflight)
            self.metrics.queue_size.labels(ticket.model).set(gate.queued)
        if ticket.limit is not None and completion_tokens > 0:
            task = asyncio.get_running_loop().create_task(self.limiter.charge_output(ticket.limit,
                                                                                     completion_tokens))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)


def _target(decision: RouteDecision | ProviderDecision) -> str:
    return decision.provider.key if isinstance(decision, ProviderDecision) else decision.server.key
