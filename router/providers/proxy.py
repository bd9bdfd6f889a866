"""The HTTP shell for ExternalModelProvider targets: build the upstream request, send it over
verified (or, when the provider asks, unverified) TLS, and pass the reply back.

Streams are relayed as they arrive. Bytes pass through untouched unless something must change
(an Anthropic stream translated to OpenAI chunks, or the usage-only chunk the router asked an
OpenAI provider for with `stream_options.include_usage`, as Kthena does, withheld from a client
that did not ask for it); their usage (a Responses API `response.completed`, an Anthropic
`message_delta`, a chat usage chunk) is read on the side, event by event (`usage`). The counts
go where an engine request's go: the route's token limits, the token metrics, the access log.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import Counter

from router.providers import adapters, anthropic, usage
from router.providers.provider import Provider
from router.request import DEFAULT_MAX_TOKENS, ParsedRequest, RequestError
from router.routing import ProviderDecision, match

if TYPE_CHECKING:
    from router.server import Router

log = logging.getLogger("caldera.router.providers")

NATIVE_PATHS = (adapters.ANTHROPIC_MESSAGES, "/v1/responses")  # served only by provider targets


class ProviderProxy:
    """Serves the requests whose ModelRoute target is an ExternalModelProvider."""

    def __init__(self, router: Router, ca_file: str | None = None) -> None:
        self.router = router
        self.verified = ssl.create_default_context()
        if ca_file:
            self.verified.load_verify_locations(ca_file)  # a private CA or egress proxy, besides the system's
        self.unverified = ssl.create_default_context()
        self.unverified.check_hostname = False
        self.unverified.verify_mode = ssl.CERT_NONE
        self.session: aiohttp.ClientSession | None = None
        self.errors = Counter("caldera_router_provider_errors", "Requests to external model providers that failed, "
                              "by provider and reason.", ["provider", "reason"], registry=router.metrics.registry)

    def install(self, app: web.Application) -> None:
        for path in NATIVE_PATHS:
            app.router.add_post(path, self.handle_native)
        app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        return self.session

    async def handle_native(self, request: web.Request) -> web.StreamResponse:
        """`/v1/messages` and `/v1/responses`: provider APIs engines do not serve."""
        started = time.perf_counter()
        auth = self.router.guard.auth
        if auth is not None:  # the guard authenticates only the engine paths
            from router.limits.auth import AuthError

            try:
                auth.authenticate(request.headers)
            except AuthError as exc:
                raise RequestError(401, str(exc), err_type="authentication_error", code="unauthorized") from None
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            raise RequestError(400, "'model' is required and must be a non-empty string", param="model")
        split_key = next((request.headers[h] for h in self.router.config.session_headers if request.headers.get(h)),
                         request.headers.get("x-request-id"))
        decision = match(self.router.state.table, body["model"], request.path, request.headers, split_key,
                         self.router.rng)
        if not isinstance(decision, ProviderDecision):
            raise RequestError(404, f"{request.path} is served only by external model providers; the route for "
                                    f"model '{body['model']}' targets a ModelServer", code="unsupported_path")
        # The route's token limits and fair queue apply as on the OpenAI paths (server.handle_inference).
        ticket = await self.router.guard.enter(request, native_request(request, body, raw), decision, ())
        done: list[int] = []
        try:
            return await self.serve(request, request.path, body, raw, decision, started, on_done=done.append)
        finally:
            self.router.guard.leave(ticket, done[0] if done else 0)

    async def serve(self, request: web.Request, path: str, body: dict[str, Any], raw: bytes,
                    decision: ProviderDecision, started: float,
                    on_done: Callable[[int], None] | None = None) -> web.StreamResponse:
        """Proxy one request; `on_done` gets its completion tokens (for the route's token limits)."""
        p = decision.provider
        status, prompt, completion, ttft = 0, 0, 0, None
        try:
            status, prompt, completion, ttft, resp = await self._serve(request, path, body, raw, decision, p, started)
            return resp
        except RequestError as exc:
            status = exc.status
            raise
        finally:
            if on_done is not None:
                on_done(completion)
            elapsed = time.perf_counter() - started
            model = decision.route.model_name or str(body.get("model"))
            self.router.metrics.request_done(model, path, status, decision.route.key, p.key, elapsed, ttft, prompt,
                                             completion)
            if self.router.access_log is not None:
                self.router.access_log.write({
                    "method": request.method, "path": path, "status": status, "model": body.get("model"),
                    "upstream_model": decision.upstream_model, "route": decision.route.key, "provider": p.key,
                    "duration_ms": round(elapsed * 1e3, 3),
                    "ttft_ms": None if ttft is None else round(ttft * 1e3, 3), "prompt_tokens": prompt,
                    "completion_tokens": completion, "stream": body.get("stream") is True,
                    "request_id": request.headers.get("x-request-id")})

    def _fail(self, p: Provider, reason: str, status: int, message: str) -> RequestError:
        self.errors.labels(p.key, reason).inc()
        log.warning("external provider request failed", extra={"provider": p.key, "reason": message})
        return RequestError(status, message, err_type="upstream_error", code=reason)

    async def _serve(self, request: web.Request, path: str, body: dict[str, Any], raw: bytes,
                     decision: ProviderDecision, p: Provider, started: float
                     ) -> tuple[int, int, int, float | None, web.StreamResponse]:
        if not p.ready:
            raise self._fail(p, "provider_not_ready", 503, f"external provider {p.key} is not ready: "
                                                           f"{p.not_ready_reason}")
        if not adapters.supports(p.provider_type, path):
            raise RequestError(400, f"provider type {p.provider_type!r} does not support path {path!r}",
                               code="unsupported_path")
        stream = body.get("stream") is True
        translate = p.provider_type == "Anthropic" and path == adapters.CHAT_COMPLETIONS
        raw_options = body.get("stream_options")
        options: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
        client_usage = bool(options.get("include_usage"))
        suppress_usage = False
        upstream_path = path
        if translate:
            upstream_path = adapters.ANTHROPIC_MESSAGES
            payload = orjson.dumps(anthropic.to_messages_request(body, decision.upstream_model))
        else:
            out: dict[str, Any] | None = None
            if decision.upstream_model != body.get("model"):
                out = {**body, "model": decision.upstream_model}
            if (p.provider_type == "OpenAI" and stream and path != "/v1/responses" and "include_usage" not in options
                    and (raw_options is None or isinstance(raw_options, dict))):
                out = {**(out or body), "stream_options": {**options, "include_usage": True}}
                suppress_usage = True
            payload = orjson.dumps(out) if out is not None else raw
        headers = adapters.forwarded_headers(p.provider_type, request.headers)
        headers.update({k.lower(): v for k, v in p.headers})
        headers.update(adapters.auth_headers(p.provider_type, p.scheme, p.credential))
        headers["content-type"] = "application/json"
        if p.provider_type == "Anthropic":
            headers.setdefault("anthropic-version", adapters.ANTHROPIC_VERSION)
        url = adapters.upstream_url(p.provider_type, p.base_url, upstream_path, request.query_string)
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=self.router.config.upstream_timeout_s)
        try:
            async with self._session().post(url, data=payload, headers=headers, allow_redirects=False,
                                            ssl=self.unverified if p.insecure_skip_verify else self.verified,
                                            timeout=timeout) as upstream:
                ttft = time.perf_counter() - started
                ctype = upstream.headers.get("content-type", "application/json")
                if stream and upstream.status == 200 and ctype.startswith("text/event-stream"):
                    resp, prompt, completion = await self._relay(request, upstream, p, decision.upstream_model,
                                                                 translate, client_usage, suppress_usage,
                                                                 usage.stream_kind(path, p.provider_type))
                    return 200, prompt, completion, ttft, resp
                data = await upstream.read()
                if upstream.status >= 300:
                    self.errors.labels(p.key, f"http_{upstream.status}").inc()
                    if translate:
                        data, ctype = anthropic.to_openai_error(data), "application/json"
                    return upstream.status, 0, 0, ttft, web.Response(
                        status=upstream.status, body=data, content_type=ctype.split(";")[0],
                        headers={"x-caldera-provider": p.key})
                parsed: Any = None
                with contextlib.suppress(orjson.JSONDecodeError):
                    parsed = orjson.loads(data)
                if translate:
                    if not isinstance(parsed, dict):
                        raise self._fail(p, "bad_response", 502, f"external provider {p.key} returned a body that "
                                                                 "is not a Messages response")
                    parsed = anthropic.to_chat_completion(parsed)
                    data, ctype = orjson.dumps(parsed), "application/json"
                prompt, completion = usage.of_body(parsed)
                return upstream.status, prompt, completion, ttft, web.Response(
                    status=upstream.status, body=data, content_type=ctype.split(";")[0],
                    headers={"x-caldera-provider": p.key})
        except TimeoutError:
            raise self._fail(p, "timeout", 504, f"external provider {p.key} timed out") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise self._fail(p, "tls", 502, f"external provider {p.key}: certificate verification failed: "
                                            f"{exc.certificate_error}") from None
        except aiohttp.ClientError as exc:
            raise self._fail(p, "transport", 502, f"external provider {p.key} request failed: {exc!r}") from None

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse, p: Provider, model: str,
                     translate: bool, client_usage: bool, suppress_usage: bool, kind: str
                     ) -> tuple[web.StreamResponse, int, int]:
        resp = web.StreamResponse(status=200, headers={"content-type": "text/event-stream",
                                                       "cache-control": "no-cache", "x-caldera-provider": p.key})
        await resp.prepare(request)
        counted = usage.StreamUsage(kind)
        translator = anthropic.StreamTranslator(model, client_usage) if translate else None
        try:
            await self._pump(resp, upstream, counted, translator, suppress_usage)
        except aiohttp.ClientError as exc:  # the response has started: the client sees the stream end early
            self.errors.labels(p.key, "stream_broken").inc()
            log.warning("external provider stream broke", extra={"provider": p.key, "reason": repr(exc)})
        await resp.write_eof()
        if translator is not None:
            counted.decoded({"usage": anthropic.usage_of(translator.usage)})
        return resp, counted.prompt, counted.completion

    @staticmethod
    async def _pump(resp: web.StreamResponse, upstream: aiohttp.ClientResponse, counted: usage.StreamUsage,
                    translator: anthropic.StreamTranslator | None, suppress_usage: bool) -> None:
        if translator is None and not suppress_usage:
            async for chunk in upstream.content.iter_any():  # nothing to change: bytes as they come
                await resp.write(chunk)
                counted.feed(chunk)  # after the write: reading usage never delays the client
            return
        events = usage.EventSplitter()
        async for chunk in upstream.content.iter_any():
            out = bytearray()
            for event in events.feed(chunk):
                payload = usage.data(event)
                if translator is not None:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        decoded = orjson.loads(payload) if payload else None
                        if isinstance(decoded, dict):
                            out += translator.feed(decoded)
                    continue
                if payload and payload != b"[DONE]" and b'"usage"' in payload:
                    try:
                        decoded = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        decoded = None
                    if isinstance(decoded, dict) and decoded.get("usage"):
                        counted.decoded(decoded)
                        if not decoded.get("choices"):
                            continue  # the usage-only chunk the router asked for, not the client
                out += event + b"\n\n"
            if out:
                await resp.write(bytes(out))


def native_request(request: web.Request, body: dict[str, Any], raw: bytes) -> ParsedRequest:
    """A `/v1/responses` or `/v1/messages` request as the guard reads a parsed OpenAI request: the
    model, and the prompt text its input-token estimate is made from. Nothing is validated
    beyond `model`: the body goes to the provider as the client sent it."""
    limit = body.get("max_output_tokens") or body.get("max_tokens")
    max_tokens = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else DEFAULT_MAX_TOKENS
    return ParsedRequest(path=request.path, body=body, raw=raw, model=body["model"], stream=body.get("stream") is True,
                         max_tokens=max_tokens, prompt_text=adapters.prompt_text(body), headers=request.headers)
