"""The HTTP shell: vLLM's OpenAI server (and SGLang's native API) over the engine core."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from enginesim import disagg
from enginesim.clock import Clock
from enginesim.config import SimConfig
from enginesim.engine import Engine, EngineDraining, EngineRequest, LoraAdapter, QueueFull, TokenOutput
from enginesim.kv_events import KVEventPublisher
from enginesim.loopmonitor import LoopLagMonitor
from enginesim.metrics import EngineMetrics
from enginesim.protocol import (
    ApiError,
    GenerationRequest,
    context_length_error,
    parse_chat,
    parse_completion,
    parse_json_body,
    parse_sglang_generate,
)
from enginesim.responses import ResponseFormatter
from enginesim.tokenizer import get_tokenizer

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(data), status=status, content_type="application/json")


class SimServer:
    """One simulated engine: configuration, engine core, metrics, events and HTTP routes."""

    def __init__(self, config: SimConfig) -> None:
        config.validate()
        self.config = config
        self.clock = Clock(config.time_scale)
        self.tokenizer = get_tokenizer(config.tokenizer)
        self.publisher: KVEventPublisher | None = None
        self.engine = Engine(
            config.profile, self.tokenizer, self.clock,
            seed=config.seed, hash_seed=config.hash_seed,
            max_waiting_queue_length=config.max_waiting_queue_length,
            max_loras=config.max_loras, hold_timeout=config.kv_transfer_timeout,
            on_kv_event=self._on_kv_event, prefix_caching=config.enable_prefix_caching,
        )
        self.metrics = EngineMetrics(self.engine, config.served_model_names[0], config.mode,
                                     legacy=config.show_hidden_metrics_for_version is not None)
        self.engine.observer = self.metrics
        if config.fake_metrics is not None:
            self.metrics.fake = dict(config.fake_metrics)
        self.loras: dict[str, LoraAdapter] = {}
        self._lora_ids = 0
        for module in config.lora_modules:
            self._add_lora(module.name, module.path, module.base_model_name)
        self.engine_id = (config.kv_transfer.engine_id if config.kv_transfer and config.kv_transfer.engine_id
                          else str(uuid.uuid4()))
        self.rooms = disagg.BootstrapRooms(config.kv_transfer_timeout / config.time_scale)
        self.loop_monitor = LoopLagMonitor(config.loop_lag_probe_interval)
        self.started_at = time.monotonic()
        self.created = int(time.time())
        self.rng = random.Random(config.seed ^ 0x5EED)
        self._bootstrap_runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------
    async def start_background(self) -> None:
        cfg = self.config
        if cfg.kv_events.active:
            topic = (cfg.kv_events.topic.replace("{host}", cfg.host).replace("{port}", str(cfg.port))
                     .replace("{model}", cfg.served_model_names[0]))
            self.publisher = KVEventPublisher(cfg.kv_events, cfg.kv_events_encoding, cfg.host, topic)
            self.publisher.start()
            log.info("publishing KV events on %s (topic %r, replay %s, %s encoding)", self.publisher.endpoint,
                     topic, self.publisher.replay_endpoint, cfg.kv_events_encoding)
        if cfg.mode == "sglang" and cfg.disaggregation_mode == "prefill":
            self._bootstrap_runner = web.AppRunner(disagg.bootstrap_app(self.rooms), access_log=None)
            await self._bootstrap_runner.setup()
            await web.TCPSite(self._bootstrap_runner, cfg.host, cfg.bootstrap_port).start()
            log.info("SGLang bootstrap server on %s:%d", cfg.host, cfg.bootstrap_port)
        self.loop_monitor.start()
        self.metrics.loop_lag_source = self.loop_monitor

    async def stop_background(self) -> None:
        self.loop_monitor.stop()
        if self.publisher is not None:
            await self.publisher.close()
        if self._bootstrap_runner is not None:
            await self._bootstrap_runner.cleanup()

    def _on_kv_event(self, event: Any) -> None:
        if self.publisher is not None:
            self.publisher.emit(event)

    @property
    def ready(self) -> bool:
        elapsed = (time.monotonic() - self.started_at) * self.config.time_scale
        return elapsed >= self.config.faults.startup_delay

    # -- LoRA ------------------------------------------------------------------
    def _add_lora(self, name: str, path: str, base: str | None = None) -> LoraAdapter:
        self._lora_ids += 1
        adapter = LoraAdapter(name, path, self._lora_ids, base)
        self.loras[name] = adapter
        return adapter

    def resolve_model(self, model: str | None) -> LoraAdapter | None:
        """None for a base model name; the adapter for a LoRA name; 404 otherwise."""
        if model is None or model in self.config.served_model_names or model == self.config.model:
            return None
        adapter = self.loras.get(model)
        if adapter is None:
            raise ApiError(404, f"The model `{model}` does not exist.", "model")
        return adapter

    # -- app -------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/ping", self.health)
        r.add_get("/version", self.version)
        r.add_get("/metrics", self.metrics_endpoint)
        r.add_get("/v1/models", self.models)
        r.add_post("/v1/completions", self.completions)
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_post("/tokenize", self.tokenize)
        r.add_post("/detokenize", self.detokenize)
        r.add_post("/reset_prefix_cache", self.reset_prefix_cache)
        r.add_post("/v1/load_lora_adapter", self.load_lora)
        r.add_post("/v1/unload_lora_adapter", self.unload_lora)
        r.add_post("/internal/nixl/pull", self.nixl_pull)
        r.add_get("/debug/stats", self.debug_stats)
        r.add_post("/debug/reset_loop_lag", self.debug_reset_lag)
        r.add_post("/debug/fake_metrics", self.debug_fake_metrics)
        if self.config.mode == "sglang":
            r.add_post("/generate", self.sglang_generate)
            r.add_get("/health_generate", self.health_generate)
            r.add_get("/get_model_info", self.get_model_info)
            r.add_get("/get_server_info", self.get_server_info)
            r.add_post("/flush_cache", self.reset_prefix_cache)
        app.on_startup.append(lambda _: self.start_background())
        app.on_cleanup.append(lambda _: self.stop_background())
        return app

    @web.middleware
    async def _errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.body(), exc.status)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _json(ApiError(exc.status, exc.reason).body(), exc.status)
            raise

    def _check_auth(self, request: web.Request) -> None:
        if self.config.api_key and request.headers.get("Authorization") != f"Bearer {self.config.api_key}":
            raise ApiError(401, "Unauthorized")

    def _check_serving(self) -> None:
        if not self.ready:
            raise ApiError(503, "The engine is starting up")
        if self.engine.draining:
            raise ApiError(503, "The engine is shutting down")

    def _inject_failure(self, prompt_len: int) -> None:
        faults = self.config.faults
        if faults.failure_rate <= 0 or self.rng.random() >= faults.failure_rate:
            return
        kind = self.rng.choice(faults.failure_types)
        self.metrics.requests_rejected.labels("injected_" + kind).inc()
        if kind == "rate_limit":
            raise ApiError(429, "Rate limit reached (injected failure)", err_type="rate_limit_exceeded")
        if kind == "invalid_api_key":
            raise ApiError(401, "Incorrect API key provided (injected failure)", err_type="invalid_api_key")
        if kind == "context_length":
            raise ApiError(400, f"This model's maximum context length is {self.config.profile.max_model_len} "
                           f"tokens. However, your request has {prompt_len} input tokens (injected failure).",
                           "input_tokens")
        if kind == "server_error":
            raise ApiError(500, "Internal server error (injected failure)")
        if kind == "invalid_request":
            raise ApiError(400, "Invalid request (injected failure)")
        raise ApiError(404, "The model does not exist (injected failure)", "model")

    # -- simple endpoints -----------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if not self.ready or self.engine.draining:
            return web.Response(status=503)
        return web.Response(status=200)

    async def health_generate(self, request: web.Request) -> web.Response:
        """SGLang: healthy only if the engine can actually generate a token."""
        if not self.ready or self.engine.draining:
            return web.Response(status=503)
        ereq = EngineRequest(self.engine.new_request_id("health"), self.tokenizer.encode("health check"), 1)
        try:
            async for _ in self.engine.generate(ereq):
                pass
        except (QueueFull, EngineDraining):
            return web.Response(status=503)
        return web.Response(status=200)

    async def get_model_info(self, request: web.Request) -> web.Response:
        return _json({"model_path": self.config.model, "tokenizer_path": self.config.model, "is_generation": True,
                      "preferred_sampling_params": None, "weight_version": "default"})

    async def get_server_info(self, request: web.Request) -> web.Response:
        cfg = self.config
        return _json({
            "model_path": cfg.model, "served_model_name": cfg.served_model_names[0], "host": cfg.host,
            "port": cfg.port, "max_running_requests": cfg.profile.max_num_seqs, "page_size": cfg.profile.block_size,
            "context_length": cfg.profile.max_model_len, "disaggregation_mode": cfg.disaggregation_mode,
            "disaggregation_bootstrap_port": cfg.bootstrap_port, "random_seed": cfg.seed,
            "max_total_num_tokens": cfg.profile.num_gpu_blocks * cfg.profile.block_size,
            "version": "0.5.0+enginesim",
        })

    async def version(self, request: web.Request) -> web.Response:
        return _json({"version": "0.11.0+enginesim"})

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        owner = "sglang" if self.config.mode == "sglang" else "vllm"
        data: list[dict[str, Any]] = [
            {"id": name, "object": "model", "created": self.created, "owned_by": owner, "root": self.config.model,
             "parent": None, "max_model_len": self.config.profile.max_model_len, "permission": []}
            for name in self.config.served_model_names
        ]
        for adapter in self.loras.values():
            data.append({"id": adapter.name, "object": "model", "created": self.created, "owned_by": owner,
                         "root": adapter.path, "parent": adapter.base_model_name or self.config.served_model_names[0],
                         "max_model_len": None, "permission": []})
        return _json({"object": "list", "data": data})

    async def tokenize(self, request: web.Request) -> web.Response:
        body = parse_json_body(await request.read())
        model = body.get("model")
        self.resolve_model(model if isinstance(model, str) else None)
        if "messages" in body:
            ids = parse_chat(body, self.tokenizer).prompt_ids
        elif isinstance(body.get("prompt"), str):
            ids = self.tokenizer.encode(body["prompt"])
        else:
            raise ApiError(400, "'prompt' (a string) or 'messages': one of them is required", "prompt")
        return _json({"count": len(ids), "max_model_len": self.config.profile.max_model_len,
                      "tokens": ids, "token_strs": None})

    async def detokenize(self, request: web.Request) -> web.Response:
        body = parse_json_body(await request.read())
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise ApiError(400, "'tokens': expected a list of integers", "tokens")
        model = body.get("model")
        self.resolve_model(model if isinstance(model, str) else None)
        return _json({"prompt": self.tokenizer.decode(tokens)})

    async def reset_prefix_cache(self, request: web.Request) -> web.Response:
        if not self.engine.reset_prefix_cache():
            raise ApiError(400, "Failed to reset the prefix cache: requests are running")
        return web.Response(status=200)

    async def debug_stats(self, request: web.Request) -> web.Response:
        e = self.engine
        return _json({
            "running": e.num_running, "waiting": e.num_waiting, "kv_cache_usage": e.blocks.usage(),
            "cached_blocks": e.blocks.num_cached, "held_prefills": len(e.held),
            "event_loop_lag_seconds": self.loop_monitor.stats(),
            "event_loop_cpu_lag_seconds": self.loop_monitor.cpu_stats(),
            "process_cpu_seconds": time.process_time(),
            "kv_event_batches": self.publisher.published_batches if self.publisher else 0,
            "config": {"profile": asdict(self.config.profile), "time_scale": self.config.time_scale,
                       "mode": self.config.mode, "tokenizer": self.config.tokenizer},
        })

    async def debug_fake_metrics(self, request: web.Request) -> web.Response:
        body = parse_json_body(await request.read())
        try:
            self.metrics.set_fake(body)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return _json(self.metrics.fake)

    async def debug_reset_lag(self, request: web.Request) -> web.Response:
        self.loop_monitor.reset()
        return web.Response(status=200)

    # -- LoRA endpoints -----------------------------------------------------
    async def load_lora(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        if not self.config.enable_lora:
            raise ApiError(400, "LoRA is not enabled; start the engine with --enable-lora")
        body = parse_json_body(await request.read())
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
            raise ApiError(400, "Both 'lora_name' and 'lora_path' must be provided.", "lora_name")
        if name in self.loras:
            raise ApiError(400, f"The lora adapter '{name}' has already been loaded.", "lora_name")
        self._add_lora(name, path, body.get("base_model_name") if isinstance(body.get("base_model_name"), str)
                       else None)
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        if not self.config.enable_lora:
            raise ApiError(400, "LoRA is not enabled; start the engine with --enable-lora")
        body = parse_json_body(await request.read())
        name = body.get("lora_name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "'lora_name' must be provided.", "lora_name")
        if self.loras.pop(name, None) is None:
            raise ApiError(404, f"The lora adapter '{name}' cannot be found.", "lora_name")
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    # -- P/D ----------------------------------------------------------------
    async def nixl_pull(self, request: web.Request) -> web.Response:
        body = parse_json_body(await request.read())
        if body.get("remote_engine_id") != self.engine_id:
            raise ApiError(404, f"engine id {body.get('remote_engine_id')!r} is not this engine ({self.engine_id})")
        rid = body.get("remote_request_id")
        held = self.engine.release_held(rid) if isinstance(rid, str) else None
        if held is None:
            raise ApiError(404, f"no KV blocks held for request {rid!r} (expired or already pulled)")
        return _json({"num_tokens": held.num_tokens, "num_blocks": len(held.block_ids)})

    async def _prepare_disagg(self, g: GenerationRequest, ereq: EngineRequest) -> None:
        cfg = self.config
        params = g.kv_transfer_params
        if cfg.kv_transfer is not None and params:
            if params.get("do_remote_decode"):
                ereq.hold_blocks_after_finish = True
            elif params.get("do_remote_prefill"):
                try:
                    await disagg.nixl_pull(params)
                    ereq.remote_prefill = True
                except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
                    self.metrics.kv_transfer_failures.inc()
                    log.warning("KV pull failed, recomputing the prefill locally: %s", exc)
        if cfg.mode == "sglang" and cfg.disaggregation_mode == "decode" and g.bootstrap_room is not None:
            if not g.bootstrap_host:
                raise ApiError(400, "'bootstrap_host': required with bootstrap_room in decode mode", "bootstrap_host")
            port = g.bootstrap_port or cfg.bootstrap_port
            try:
                await disagg.wait_for_bootstrap(g.bootstrap_host, port, g.bootstrap_room,
                                                cfg.kv_transfer_timeout / cfg.time_scale)
            except (TimeoutError, RuntimeError, OSError) as exc:
                self.metrics.kv_transfer_failures.inc()
                raise ApiError(503, f"KV transfer for bootstrap room {g.bootstrap_room} failed: {exc}") from None
            ereq.remote_prefill = True

    def _kv_transfer_result(self, g: GenerationRequest, ereq: EngineRequest) -> dict[str, Any] | None:
        if self.config.kv_transfer is None or not g.kv_transfer_params:
            return None
        if not g.kv_transfer_params.get("do_remote_decode"):
            return None
        held = self.engine.held.get(ereq.request_id)
        return {
            "do_remote_prefill": True, "do_remote_decode": False,
            "remote_block_ids": list(held.block_ids if held else ereq.block_ids),
            "remote_engine_id": self.engine_id, "remote_request_id": ereq.request_id,
            "remote_host": self.config.host, "remote_port": self.config.port, "tp_size": 1,
        }

    # -- generation -----------------------------------------------------------
    async def completions(self, request: web.Request) -> web.StreamResponse:
        self._check_auth(request)
        g = parse_completion(parse_json_body(await request.read()), self.tokenizer)
        return await self._generate(request, g)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        self._check_auth(request)
        g = parse_chat(parse_json_body(await request.read()), self.tokenizer)
        return await self._generate(request, g)

    async def sglang_generate(self, request: web.Request) -> web.StreamResponse:
        g = parse_sglang_generate(parse_json_body(await request.read()), self.tokenizer)
        return await self._generate(request, g)

    def _engine_request(self, g: GenerationRequest, lora: LoraAdapter | None) -> EngineRequest:
        prompt_len = len(g.prompt_ids)
        max_len = self.config.profile.max_model_len
        error = context_length_error(prompt_len, g.max_tokens, max_len)
        if error is not None:
            raise error
        max_tokens = g.max_tokens or min(self.config.default_max_tokens, max_len - prompt_len)
        prefix = {"chat": "chatcmpl", "completion": "cmpl", "sglang": "gen"}[g.kind]
        return EngineRequest(
            request_id=self.engine.new_request_id(prefix), prompt_ids=g.prompt_ids, max_tokens=max_tokens,
            lora=lora, seed=g.seed, cache_salt=g.cache_salt, stop=g.stop, stop_token_ids=g.stop_token_ids,
        )

    async def _generate(self, request: web.Request, g: GenerationRequest) -> web.StreamResponse:
        try:
            return await self._run_generation(request, g)
        finally:
            if self._is_sglang_prefill(g):
                assert g.bootstrap_room is not None
                # A prefill that failed tells its waiting decode now instead of letting it time
                # out (no-op when the room was already completed).
                self.rooms.fail(g.bootstrap_room, f"prefill of room {g.bootstrap_room} failed")

    async def _run_generation(self, request: web.Request, g: GenerationRequest) -> web.StreamResponse:
        self._check_serving()
        self._inject_failure(len(g.prompt_ids))
        lora = self.resolve_model(g.model)
        ereq = self._engine_request(g, lora)
        await self._prepare_disagg(g, ereq)
        model_name = g.model or self.config.served_model_names[0]
        try:
            outputs = self.engine.submit(ereq)
        except QueueFull as exc:
            self.metrics.requests_rejected.labels("queue_full").inc()
            raise ApiError(self.config.queue_full_status, str(exc)) from None
        except EngineDraining as exc:
            raise ApiError(503, str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        fmt = ResponseFormatter(g, ereq, model_name, self.created if g.kind == "sglang" else int(time.time()))
        try:
            if g.stream:
                return await self._stream(request, g, ereq, fmt, outputs)
            return await self._collect(request, g, ereq, fmt, outputs)
        finally:
            self.engine.abort(ereq)

    def _crash_due(self, n_tokens: int) -> bool:
        limit = self.config.faults.crash_after_tokens
        return limit is not None and n_tokens >= limit

    def _crash(self, request: web.Request) -> None:
        if self.config.faults.crash_mode == "exit":
            log.error("injected crash after %s tokens: killing the process", self.config.faults.crash_after_tokens)
            os.kill(os.getpid(), signal.SIGKILL)
        log.warning("injected crash after %s tokens: aborting the connection", self.config.faults.crash_after_tokens)
        if request.transport is not None:
            request.transport.abort()

    def _is_sglang_prefill(self, g: GenerationRequest) -> bool:
        return (self.config.mode == "sglang" and self.config.disaggregation_mode == "prefill"
                and g.bootstrap_room is not None)

    def _sglang_room_done(self, g: GenerationRequest, ereq: EngineRequest) -> None:
        if self._is_sglang_prefill(g):
            assert g.bootstrap_room is not None
            self.rooms.complete(g.bootstrap_room, len(ereq.prompt_ids))

    async def _stream(self, request: web.Request, g: GenerationRequest, ereq: EngineRequest,
                      fmt: ResponseFormatter, outputs: AsyncIterator[TokenOutput]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await resp.prepare(request)
            for chunk in fmt.opening():
                await resp.write(chunk)
            n = 0
            async for out in outputs:
                n += 1
                if n == 1:
                    self._sglang_room_done(g, ereq)
                transfer = self._kv_transfer_result(g, ereq) if out.finish_reason else None
                await resp.write(fmt.token_chunk(out, n, transfer))
                if self._crash_due(n) and out.finish_reason is None:
                    self._crash(request)
                    return resp
            for chunk in fmt.closing():
                await resp.write(chunk)
            await resp.write_eof()
        except ConnectionError:
            log.debug("client went away during %s", ereq.request_id)
        return resp

    async def _collect(self, request: web.Request, g: GenerationRequest, ereq: EngineRequest,
                       fmt: ResponseFormatter, outputs: AsyncIterator[TokenOutput]) -> web.StreamResponse:
        n = 0
        async for out in outputs:
            n += 1
            if n == 1:
                self._sglang_room_done(g, ereq)
            if self._crash_due(n) and out.finish_reason is None:
                self._crash(request)
                return web.Response(status=500)
        return _json(fmt.full_response(self._kv_transfer_result(g, ereq)))


async def serve(config: SimConfig) -> None:
    """Run until SIGTERM/SIGINT, then drain in-flight requests within the grace period."""
    server = SimServer(config)
    app = server.build_app()
    # Thousands of live request objects make full cyclic collections take tens of ms and stall
    # every stream at once; freeze start-up objects and collect the old generation rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(2_000, 50, 1000)
    # In-flight handlers get the grace period (below); whatever is left then is cancelled.
    # handler_cancellation: a client that disconnects aborts its request, as in vLLM.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=4096)
    await site.start()
    log.info("enginesim serving %s (%s mode, profile %s, time scale %g) on http://%s:%d",
             ",".join(config.served_model_names), config.mode, config.profile.name, config.time_scale,
             config.host, config.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.engine.draining = True
    log.info("shutting down: draining %d running and %d waiting requests (grace %.1fs)",
             server.engine.num_running, server.engine.num_waiting, config.shutdown_grace_period)
    try:
        await asyncio.wait_for(server.engine.wait_idle(), config.shutdown_grace_period)
    except TimeoutError:
        log.warning("grace period over with %d requests still running", server.engine.num_running)
    await runner.shutdown()
    await runner.cleanup()
