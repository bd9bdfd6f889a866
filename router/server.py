"""The HTTP shell: an aiohttp server that parses, routes, picks and proxies.

Everything that decides lives in pure modules (request, routing, scheduling, pd); this file
only moves bytes: the request body is read once, forwarded as-is unless the model name
changes, and streamed responses are passed through chunk by chunk without buffering.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from router import pd
from router.accesslog import AccessLog
from router.config import RouterConfig, build_profile
from router.endpoints import Endpoint
from router.kvindex.approximate import ApproximateIndex
from router.kvindex.precise import KVEventIndex
from router.kvindex.subscriber import SubscriberPool
from router.metrics import RouterMetrics
from router.providers.provider import compile_providers
from router.providers.proxy import ProviderProxy
from router.request import CHAT_COMPLETIONS, COMPLETIONS, ParsedRequest, RequestError, parse_request
from router.resilience import failover, migration, pd_failover
from router.resilience.guard import Guard
from router.resilience.retry import RetryPolicy, policy_for
from router.routing import ProviderDecision, RouteDecision, Server, match
from router.scheduling import Decision, Profile, SchedulingContext, Signals
from router.scorers.no_hit_lru import note_routed
from router.scrape import scrape_loop
from router.state import PodInfo, RouterState
from router.tokenize import load_tokenizer
from router.upstream import UpstreamConnectionError, UpstreamPool, UpstreamResponse

log = logging.getLogger("caldera.router")

_HOP_HEADERS = {"content-type": "application/json"}


class UpstreamError(Exception):
    def __init__(self, pod: str, reason: str, status: int = 502) -> None:
        super().__init__(f"{pod}: {reason}")
        self.pod = pod
        self.reason = reason
        self.status = status


def _error(status: int, message: str, err_type: str = "invalid_request_error",
           code: str | None = None, param: str | None = None) -> web.Response:
    err = RequestError(status, message, code=code, param=param, err_type=err_type)
    return web.Response(status=status, body=err.body(), content_type="application/json")


@dataclass
class Outcome:
    status: int = 0
    pod: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    cached_fraction: float = 0.0


class Router:
    def __init__(self, config: RouterConfig, state: RouterState | None = None) -> None:
        self.config = config
        self.state = state or RouterState()
        self.rng = random.Random(config.seed)
        self.metrics = RouterMetrics()
        tokenize = load_tokenizer(config.tokenizer) if config.tokenizer else None
        pi = config.prefix_index
        self.signals = Signals(approx=ApproximateIndex(pi.block_tokens, pi.max_blocks, pi.lru_capacity),
                               precise=KVEventIndex(), tokenize=tokenize)
        self.profile: Profile = build_profile(config.profile, config.all_profiles()[config.profile], self.rng)
        self.subscribers = SubscriberPool(index=self.signals.precise, on_batch=self._on_kv_batch,
                                          on_gap=lambda pod: self.metrics.kv_event_gaps.labels(pod).inc())
        # The last decisions, explained only when /debug/state asks (not on every request).
        self.recent: deque[tuple[str, Decision, dict[str, Any] | None]] = deque(maxlen=64)
        self._policies: dict[int, tuple[Server, RetryPolicy]] = {}
        self.access_log = AccessLog() if config.access_log else None
        self.ready = False
        # Gateway mode (router.gateway) routes by listener, ModelRoute parentRefs and HTTPRoutes.
        self.route_hook: Callable[[web.Request, ParsedRequest], RouteDecision | ProviderDecision] | None = None
        self.models_hook: Callable[[web.Request], list[str]] | None = None  # model names served where it arrived
        # Gateway mode: HTTPRoute filters edit the request sent upstream (headers in place; returns the path).
        self.upstream_hook: Callable[[web.Request, dict[str, str]], str] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.pool = UpstreamPool()
        self._tasks: list[asyncio.Task[Any]] = []
        self._lora_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.state.on_removed.append(self._endpoint_removed)
        self.state.on_added.append(self._endpoint_added)
        self.guard = Guard(config.resilience, self.metrics.registry, config.auth, config.fairness)
        self.app = self._build_app()
        self.guard.install(self.app)
        self.providers = ProviderProxy(self, config.providers.ca_file)
        self.providers.install(self.app)

    # ---- lifecycle -------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._errors])
        app.router.add_post(COMPLETIONS, self.handle_inference)
        app.router.add_post(CHAT_COMPLETIONS, self.handle_inference)
        app.router.add_get("/v1/models", self.handle_models)
        app.router.add_get("/healthz", self.handle_healthz)
        app.router.add_get("/readyz", self.handle_readyz)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/debug/state", self.handle_debug)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                             timeout=aiohttp.ClientTimeout(total=None))
        self._tasks.append(asyncio.create_task(scrape_loop(
            lambda: self.state.endpoints.values(), self.config.metrics_interval_s, self.session)))
        self._tasks.append(asyncio.create_task(self._models_loop()))
        if self.access_log is not None:
            self.access_log.start()
        for ep in self.state.endpoints.values():
            self._endpoint_added(ep)

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.subscribers.close()
        if self.access_log is not None:
            await self.access_log.close()
        self.pool.close()
        if self.session is not None:
            await self.session.close()

    def load_static(self, **extra: Any) -> None:
        """Routes, servers and endpoints from the config; `extra` goes to RouterState.update."""
        cfg = self.config
        pods = [PodInfo(name=e.name, namespace=e.namespace, ip=None, labels=e.labels, address=e.address,
                        kv_events=e.kv_events, kv_replay=e.kv_replay, bootstrap_port=e.bootstrap_port)
                for e in cfg.endpoints]
        extra.setdefault("providers", compile_providers(cfg.external_model_providers, cfg.secrets))
        self.state.update(cfg.model_routes, cfg.model_servers, pods, **extra)
        self.ready = True

    def _endpoint_added(self, ep: Endpoint) -> None:
        if not self.config.kv_events or ep.kv_events is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving yet; _on_startup subscribes
        self.subscribers.ensure(ep.name, ep.kv_events, ep.kv_replay)

    def _endpoint_removed(self, ep: Endpoint) -> None:
        self.signals.approx.remove_pod(ep.name)
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self.subscribers.remove(ep.name))

    def _on_kv_batch(self, pod: str) -> None:
        self.metrics.kv_events.labels(pod).inc()

    async def _models_loop(self) -> None:
        """Poll GET /v1/models on each pod: which LoRA adapters are loaded."""
        assert self.session is not None
        while True:
            for ep in list(self.state.endpoints.values()):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
                    async with self.session.get(f"{ep.url}/v1/models",
                                                timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            data = orjson.loads(await resp.read())
                            ep.loaded_loras = frozenset(
                                m["id"] for m in data.get("data", []) if m.get("parent"))
                if ep.metrics.num_gpu_blocks and ep.metrics.block_size:
                    tokens = ep.metrics.num_gpu_blocks * ep.metrics.block_size
                    self.signals.approx.set_capacity(ep.name, tokens // self.config.prefix_index.block_tokens)
            await asyncio.sleep(self.config.models_interval_s)

    # ---- middleware and small endpoints ----------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestError as exc:
            self.metrics.rejected.labels(str(exc.status), exc.code or "invalid_request").inc()
            return web.Response(status=exc.status, body=exc.body(), content_type="application/json")
        except web.HTTPRequestEntityTooLarge:
            self.metrics.rejected.labels("413", "body_too_large").inc()
            return _error(413, f"request body exceeds {self.config.max_body_bytes} bytes", code="body_too_large")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = exc.reason.lower().replace(" ", "_")
            self.metrics.rejected.labels(str(exc.status), code).inc()
            return _error(exc.status, exc.reason, code=code)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            return _error(500, "internal router error", err_type="server_error")

    async def handle_models(self, request: web.Request) -> web.Response:
        names = self.models_hook(request) if self.models_hook is not None else self.state.table.model_names()
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "caldera"} for name in names]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def handle_readyz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok") if self.ready else web.Response(status=503, text="not ready")

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def handle_debug(self, request: web.Request) -> web.Response:
        snap = self.state.snapshot()
        snap["profile"] = self.config.profile
        snap["index"] = {
            "approximate": {e: self.signals.approx.blocks_of(e) for e in self.state.endpoints},
            "precise": {e: self.signals.precise.blocks_of(e) for e in self.state.endpoints},
            "subscribers": {p: vars(s.stats) for p, s in self.subscribers.subscribers.items()},
        }
        snap["recentDecisions"] = [{"model": model, **decision.explain(), **(extra or {})}
                                   for model, decision, extra in list(self.recent)]
        return web.Response(body=orjson.dumps(snap, default=str), content_type="application/json")

    # ---- inference -------------------------------------------------------------------------

    def _split_key(self, request: web.Request, parsed: ParsedRequest) -> str | None:
        for name in self.config.session_headers:
            value = request.headers.get(name)
            if value:
                return value
        return request.headers.get("x-request-id")

    async def handle_inference(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        raw = await request.read()
        headers = request.headers  # case-insensitive; rule header names are lower-case
        parsed = parse_request(request.path, raw, headers)
        hook = self.route_hook
        decision = hook(request, parsed) if hook is not None else match(
            self.state.table, parsed.model, request.path, headers, self._split_key(request, parsed), self.rng)
        if isinstance(decision, ProviderDecision):  # a hosted API outside the cluster: no pods to pick
            # The route's token limits and fair queue apply as to engine targets; no pods, no overload check.
            provider_ticket = await self.guard.enter(request, parsed, decision, ())
            done: list[int] = []
            try:
                return await self.providers.serve(request, parsed.path, parsed.body, parsed.raw, decision, started,
                                                  on_done=done.append)
            finally:
                self.guard.leave(provider_ticket, done[0] if done else 0)
        ticket = await self.guard.enter(request, parsed, decision, self.state.endpoints_of(decision.server))
        outcome = Outcome()
        self.metrics.in_flight += 1
        try:
            resp = await self._serve(request, parsed, decision, outcome)
        except RequestError as exc:
            outcome.status = exc.status
            raise
        except UpstreamError as exc:
            outcome.status = exc.status
            return _error(exc.status, f"upstream {exc.pod} failed: {exc.reason}", err_type="upstream_error",
                          code="upstream_error")
        finally:
            self.metrics.in_flight -= 1
            self.guard.leave(ticket, outcome.completion_tokens)
            self._finish(request, parsed, decision, outcome, started)
        return resp

    def _finish(self, request: web.Request, parsed: ParsedRequest, decision: RouteDecision,
                outcome: Outcome, started: float) -> None:
        elapsed = time.perf_counter() - started
        model = decision.route.model_name or parsed.model
        m = self.metrics
        m.request_done(model, request.path, outcome.status, decision.route.key, decision.server.key, elapsed,
                       outcome.ttft_s, outcome.prompt_tokens, outcome.completion_tokens)
        if self.access_log is not None:
            self.access_log.write({
                "method": request.method, "path": request.path, "status": outcome.status, "model": parsed.model,
                "upstream_model": decision.upstream_model, "route": decision.route.key,
                "server": decision.server.key, "pod": outcome.pod, "duration_ms": round(elapsed * 1e3, 3),
                "ttft_ms": None if outcome.ttft_s is None else round(outcome.ttft_s * 1e3, 3),
                "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
                "cached_fraction": round(outcome.cached_fraction, 3), "stream": parsed.stream,
                "request_id": request.headers.get("x-request-id"),
                "gateway": getattr(decision, "gateway", None),
            })

    def _schedule(self, ctx: SchedulingContext, endpoints: list[Endpoint], server_key: str) -> Decision:
        if not endpoints:
            raise UpstreamError(server_key, "no ready endpoints", status=503)
        decision = self.profile.run(ctx, endpoints)
        if decision is None:
            raise UpstreamError(server_key, "every endpoint was filtered out", status=503)
        self.metrics.plugins_done(decision.durations_s)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("routing decision", extra=decision.explain())
        return decision

    def _remember(self, parsed: ParsedRequest, decision: Decision, extra: dict[str, Any] | None = None) -> None:
        self.recent.append((parsed.model, decision, extra))

    def _policy(self, server: Server) -> RetryPolicy:
        """The server's retry policy, built once per compiled server (routes rebuild on change)."""
        cached = self._policies.get(id(server))
        if cached is None or cached[0] is not server:
            if len(self._policies) > 1024:
                self._policies.clear()
            cached = self._policies[id(server)] = (server, policy_for(server, self.config.resilience.retries, None))
        return cached[1]

    async def _serve(self, request: web.Request, parsed: ParsedRequest, rd: RouteDecision,
                     outcome: Outcome) -> web.StreamResponse:
        server = rd.server
        ctx = SchedulingContext(request=parsed, model=rd.upstream_model, lora=rd.lora, signals=self.signals)
        outcome.prompt_tokens = ctx.prompt_tokens
        if server.pd_group is not None:
            return await self._serve_pd(request, parsed, rd, ctx, outcome)
        eps = self.state.endpoints_of(server)
        subset = getattr(rd, "subset", None)  # EPP x-gateway-destination-endpoint[-subset] (router.gateway)
        if subset is not None:
            eps = [e for e in eps if e.address in subset]
        decision = self._schedule(ctx, eps, server.key)
        self._remember(parsed, decision)
        body = parsed.with_model(rd.upstream_model)
        res = self.config.resilience
        relay = migration.StreamRelay(chat=parsed.is_chat) if parsed.stream and res.migration_limit else None

        async def attempt(ep: Endpoint, body: bytes, relay: migration.StreamRelay | None) -> web.StreamResponse:
            return await self._proxy(request, parsed, ctx, ep, body, outcome, relay=relay)

        return await failover.serve(  # retries, then migration of streams broken mid-way
            decision.ordered, body, attempt, self._policy(server), relay, parsed,
            rd.upstream_model, res.migration_limit, self.guard.metrics, server.key,
            lambda e: (e.pod, e.reason, e.status) if isinstance(e, UpstreamError) else None,
            lambda ep, text: failover.engine_tokenize(self._client(), ep, rd.upstream_model, text))

    async def _ensure_lora(self, ep: Endpoint, lora: str) -> None:
        """Load the adapter on the pod when it does not have it (vLLM dynamic LoRA loading)."""
        if ep.has_lora(lora):
            return
        assert self.session is not None
        lock = self._lora_locks.setdefault((ep.name, lora), asyncio.Lock())
        async with lock:
            if ep.has_lora(lora):
                return
            payload = {"lora_name": lora, "lora_path": self.config.lora_paths.get(lora, lora)}
            try:
                async with self.session.post(f"{ep.url}/v1/load_lora_adapter", json=payload,
                                             timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    text = await resp.text()
                    if resp.status >= 400 and "already" not in text.lower():
                        raise UpstreamError(ep.name, f"loading LoRA adapter {lora!r} failed: {text[:200]}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise UpstreamError(ep.name, f"loading LoRA adapter {lora!r} failed: {exc!r}") from None
            ep.loaded_loras = ep.loaded_loras | {lora}
            log.info("loaded LoRA adapter", extra={"pod": ep.name, "lora": lora})

    def _begin(self, ctx: SchedulingContext, ep: Endpoint, outcome: Outcome) -> tuple[int, int]:
        cached = ctx.cached_fraction(ep)
        outcome.cached_fraction = cached
        self.metrics.prefix_match.observe(cached)
        prefill = int(ctx.prompt_tokens * (1.0 - cached))
        tokens = prefill + ctx.request.max_tokens  # the KV this request adds: cached prefixes are shared
        ep.begin(tokens, prefill)
        note_routed(ctx, ep)  # before record(): stamps the pod if no pod had this prefix
        self.signals.approx.record(ep.name, ctx.approx_hashes)
        return tokens, prefill

    async def _upstream(self, ep: Endpoint, body: bytes, request: web.Request,
                        timeout_s: float | None) -> UpstreamResponse:
        headers = dict(_HOP_HEADERS)
        rid = request.headers.get("x-request-id")
        if rid:
            headers["x-request-id"] = rid
        path = request.path if self.upstream_hook is None else self.upstream_hook(request, headers)
        try:
            resp = await self.pool.request(ep.address, "POST", path, body, headers,
                                           head_timeout_s=timeout_s or self.config.upstream_timeout_s)
        except (UpstreamConnectionError, TimeoutError, OSError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connect"
            self.metrics.upstream_errors.labels(ep.name, reason).inc()
            log.warning("upstream attempt failed", extra={"pod": ep.name, "reason": repr(exc)})
            raise UpstreamError(ep.name, f"{reason} failed: {exc}") from None
        if resp.status >= 500 or resp.status == 429:  # 429: the engine sheds load; another pod may not
            try:
                text = await resp.read()
            except UpstreamConnectionError:
                text = b""
            self.metrics.upstream_errors.labels(ep.name, f"http_{resp.status}").inc()
            log.warning("upstream attempt failed", extra={"pod": ep.name, "reason": f"HTTP {resp.status}"})
            raise UpstreamError(ep.name, f"HTTP {resp.status}: {text[:200]!r}",
                                status=429 if resp.status == 429 else 502)
        return resp

    async def _proxy(self, request: web.Request, parsed: ParsedRequest, ctx: SchedulingContext, ep: Endpoint,
                     body: bytes, outcome: Outcome, t0: float | None = None,
                     relay: migration.StreamRelay | None = None) -> web.StreamResponse:
        if ctx.lora is not None:
            await self._ensure_lora(ep, ctx.lora)
        tokens, prefill = self._begin(ctx, ep, outcome)
        outcome.pod = ep.name
        t0 = time.perf_counter() if t0 is None else t0
        server = self.state.table.servers.get(ep.server)
        try:
            upstream = await self._upstream(ep, body, request, server.timeout_s if server else None)
            try:
                ctype = upstream.headers.get("content-type", "application/json")
                if upstream.status == 200 and ctype.startswith("text/event-stream"):
                    return await self._stream(request, upstream, ep, prefill, outcome, t0, relay)
                try:
                    data = await upstream.read()
                except UpstreamConnectionError as exc:
                    self.metrics.upstream_errors.labels(ep.name, "body").inc()
                    raise UpstreamError(ep.name, f"response body broken: {exc}") from None
                ep.first_token(prefill)
                outcome.ttft_s = time.perf_counter() - t0
                outcome.status = upstream.status
                if upstream.status == 200:
                    self._count_usage(data, outcome)
                return web.Response(status=upstream.status, body=data, content_type=ctype.split(";")[0],
                                    headers=self._reply_headers(ep))
            finally:
                upstream.release()
        finally:
            ep.end(tokens)

    def _client(self) -> aiohttp.ClientSession:
        assert self.session is not None
        return self.session

    def _reply_headers(self, ep: Endpoint) -> dict[str, str]:
        return {"x-caldera-pod": ep.name, "x-caldera-server": ep.server}

    @staticmethod
    def _count_usage(data: bytes, outcome: Outcome) -> None:
        try:
            usage = orjson.loads(data).get("usage") or {}
            outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
            outcome.prompt_tokens = int(usage.get("prompt_tokens") or outcome.prompt_tokens)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            pass  # not an OpenAI body: nothing to count

    async def _stream(self, request: web.Request, upstream: UpstreamResponse, ep: Endpoint, prefill: int,
                      outcome: Outcome, t0: float, relay: migration.StreamRelay | None = None
                      ) -> web.StreamResponse:
        if relay is not None and relay.response is not None:
            resp = relay.response  # a migrated stream continues the client's response
        else:
            resp = web.StreamResponse(status=200, headers={
                "content-type": "text/event-stream", "cache-control": "no-cache", **self._reply_headers(ep)})
            await resp.prepare(request)
            if relay is not None:
                relay.response = resp
        outcome.status = 200
        first = True
        chunks = 0
        try:
            async for chunk in upstream.iter_chunks():
                if first:
                    ep.first_token(prefill)
                    outcome.ttft_s = time.perf_counter() - t0
                    first = False
                if relay is not None:
                    chunk = relay.feed(chunk)  # complete events only, rewritten after a migration
                    if not chunk:
                        continue
                chunks += chunk.count(b"data: ")
                await resp.write(chunk)
        except UpstreamConnectionError as exc:
            self.metrics.upstream_errors.labels(ep.name, "stream_broken").inc()
            log.warning("upstream stream broke", extra={"pod": ep.name, "reason": repr(exc)})
            if relay is not None and not relay.done:
                raise failover.StreamBroken(ep.name, repr(exc)) from None
        if relay is not None:
            if not relay.done:
                raise failover.StreamBroken(ep.name, "stream ended before [DONE]")
            outcome.completion_tokens = relay.tokens
            with contextlib.suppress(ConnectionResetError):
                await resp.write_eof()
            return resp
        outcome.completion_tokens = max(0, chunks - 1)  # minus the [DONE] marker
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    # ---- prefill/decode --------------------------------------------------------------------

    async def _serve_pd(self, request: web.Request, parsed: ParsedRequest, rd: RouteDecision,
                        ctx: SchedulingContext, outcome: Outcome) -> web.StreamResponse:
        """Decode pods go through `failover.serve` (retries, migration) as an aggregated request;
        each decode attempt runs its own prefill with failover over the decode pod's pdGroup."""
        server = rd.server
        dd = self._schedule(ctx, self.state.endpoints_of(server, "decode"), server.key)
        res = self.config.resilience
        policy = self._policy(server)
        connector = pd.connector_of(server)
        tracker = pd_failover.PrefillTracker(policy)
        body = parsed.with_model(rd.upstream_model)
        relay = migration.StreamRelay(chat=parsed.is_chat) if parsed.stream and res.migration_limit else None
        t0 = time.perf_counter()
        done_prefill: list[tuple[str | None, bytes, dict[str, Any]]] = []  # (group, body, decode extra)
        remembered = False

        async def attempt(decode: Endpoint, sent: bytes, relay: migration.StreamRelay | None) -> web.StreamResponse:
            nonlocal remembered
            # A migrated stream resumes with a new body (prompt + text so far): that one is prefilled.
            req = parsed if sent is body else parse_request(parsed.path, sent, request.headers)
            pool = pd.same_group(self.state.endpoints_of(server, "prefill"), decode)
            skip = bool(pool) and pd.skip_prefill(ctx.prompt_tokens, ctx.cached_fraction(decode),
                                                  self.config.pd.skip_prefill_below_tokens)
            ordered: list[Endpoint] = []
            if not skip and (candidates := tracker.candidates(pool)):
                with contextlib.suppress(UpstreamError):  # every candidate filtered out: none ready
                    ordered = self._schedule(ctx, candidates, server.key).ordered
            if not remembered:
                self._remember(parsed, dd, {"prefill": ordered[0].name if ordered else None})
                remembered = True
            extra: dict[str, Any] = {}
            try:
                if skip:
                    self.metrics.pd_prefill_skipped.inc()
                elif connector == "sglang":
                    try:
                        _, resp = await pd_failover.run_prefill(
                            ordered, lambda p: self._sglang_exchange(request, req, rd, ctx, p, decode, outcome, t0,
                                                                     relay),
                            tracker, self.guard.metrics, server.key, decode.pd_group)
                    except UpstreamError as exc:  # the decode pod's own failure (its prefill was served)
                        pd_failover.mark_unreachable(decode, exc.reason)
                        raise
                    return resp
                elif done_prefill and done_prefill[0][1] is sent and pd.prefill_reusable(
                        connector, done_prefill[0][0], decode.pd_group):
                    extra = done_prefill[0][2]
                else:
                    def prefill_on(p: Endpoint) -> Awaitable[Any]:
                        plan = pd.plan(req, rd.upstream_model, connector, p, self.config.pd.sglang_bootstrap_port)
                        assert plan.prefill_body is not None
                        return self._prefill(request, ctx, p, plan.prefill_body, rd)

                    _, answer = await pd_failover.run_prefill(ordered, prefill_on, tracker, self.guard.metrics,
                                                              server.key, decode.pd_group)
                    extra = pd.decode_extra_from_prefill(connector, answer)
                    done_prefill[:] = [(decode.pd_group, sent, extra)]
            except pd_failover.PrefillFailed as exc:  # not retryable (a client error): the client gets it
                raise UpstreamError(exc.pod, f"prefill {exc.reason}", status=exc.status) from None
            except pd_failover.PrefillUnavailable as exc:
                if not (res.pd_fallback_to_decode and pd.decode_serves_alone(server)):
                    self.guard.metrics.pd_fallbacks.labels(server.key, "unavailable").inc()
                    raise UpstreamError(f"{server.key} pdGroup {decode.pd_group}", f"prefill unavailable: {exc}",
                                        status=503) from None
                self.guard.metrics.pd_fallbacks.labels(server.key, "decode_only").inc()
                log.warning("no prefill pod left: the decode pod serves the request alone",
                            extra={"pod": decode.name, "reason": str(exc)})
            try:
                return await self._proxy(request, req, ctx, decode, req.with_model(rd.upstream_model, extra=extra),
                                         outcome, t0, relay)
            except UpstreamError as exc:
                pd_failover.mark_unreachable(decode, exc.reason)
                raise

        return await failover.serve(  # decode retries, then migration of streams broken mid-way
            dd.ordered, body, attempt, policy, relay, parsed, rd.upstream_model, res.migration_limit,
            self.guard.metrics, server.key,
            lambda e: (e.pod, e.reason, e.status) if isinstance(e, UpstreamError) else None,
            lambda ep, text: failover.engine_tokenize(self._client(), ep, rd.upstream_model, text))

    async def _sglang_exchange(self, request: web.Request, req: ParsedRequest, rd: RouteDecision,
                               ctx: SchedulingContext, prefill: Endpoint, decode: Endpoint, outcome: Outcome,
                               t0: float, relay: migration.StreamRelay | None) -> web.StreamResponse:
        """SGLang: prefill and decode at once, meeting in a fresh bootstrap room."""
        plan = pd.plan(req, rd.upstream_model, "sglang", prefill, self.config.pd.sglang_bootstrap_port, self.rng)
        assert plan.prefill_body is not None
        task = asyncio.create_task(self._prefill(request, ctx, prefill, plan.prefill_body, rd))
        try:
            resp = await self._proxy(request, req, ctx, decode,
                                     req.with_model(rd.upstream_model, extra=plan.decode_extra), outcome, t0, relay)
        except UpstreamError as exc:
            if exc.reason.startswith("connect") and not task.done():
                # The decode pod never got the request: no decode will join this room, so the
                # prefill is not waited for (it could hold until its KV transfer times out).
                task.cancel()
                task.add_done_callback(_retrieve)
                raise
            # A decode whose prefill failed fails too (its KV never arrives): blame the prefill then.
            if (failed := await _prefill_failure(task)) is not None:
                raise failed from None
            raise
        except BaseException:
            task.cancel()
            task.add_done_callback(_retrieve)
            raise
        if (failed := await _prefill_failure(task)) is not None:
            log.warning("prefill failed after its decode was served", extra={"pod": failed.pod,
                                                                             "reason": failed.reason})
        return resp

    async def _prefill(self, request: web.Request, ctx: SchedulingContext, ep: Endpoint, body: bytes,
                       rd: RouteDecision) -> Any:
        """One prefill request; every failure is a PrefillFailed naming the pod and the reason."""
        scratch = Outcome()
        tokens, prefill = self._begin(ctx, ep, scratch)
        t0 = time.perf_counter()
        try:
            try:
                upstream = await self._upstream(ep, body, request, rd.server.timeout_s)
            except UpstreamError as exc:
                raise pd_failover.PrefillFailed(ep.name, exc.reason, exc.status) from None
            try:
                data = await upstream.read()
            except UpstreamConnectionError as exc:  # the engine died before the answer was complete
                self.metrics.upstream_errors.labels(ep.name, "body").inc()
                raise pd_failover.PrefillFailed(ep.name, f"body broken: {exc}") from None
            finally:
                upstream.release()
            if upstream.status != 200:
                raise pd_failover.PrefillFailed(ep.name, f"HTTP {upstream.status}: {data[:200]!r}",
                                                status=upstream.status)
        finally:
            ep.first_token(prefill)
            ep.end(tokens)
        self.metrics.prefill_duration.labels(rd.route.model_name or ctx.model).observe(time.perf_counter() - t0)
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(data)
        return None


async def _prefill_failure(task: asyncio.Task[Any]) -> pd_failover.PrefillFailed | None:
    """The prefill task's failure once it is done, or None when it succeeded."""
    try:
        await task
    except pd_failover.PrefillFailed as exc:
        return exc
    return None


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "never retrieved" warning for a prefill nobody waits for


async def iter_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """SSE events of a response, one `data:` payload at a time (for clients and tests)."""
    buf = b""
    async for chunk in resp.content.iter_any():
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    yield line[6:]


def new_request_id() -> str:
    return uuid.uuid4().hex


def tune_gc_for_serving(gen0_threshold: int = 20_000) -> None:
    """Freeze what start-up allocated and run the cyclic collector far less often.

    With CPython's default thresholds (700, 10, 10) the collector ran ~200 times a second under
    load, and each full pass walked every module, pydantic model and route object start-up
    left behind (tens of ms a pass): about 30 µs per request and pauses in the p99. A proxied
    request's objects are freed by reference counting, so frequent young passes find nothing.
    Call once, after start-up, in the serving process only.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, 20, 20)
