"""Router resilience benchmark: idle-stream memory, overload, fairness TTFT, cancellation, migration.

    .venv/bin/python benchmarks/router_resilience.py [--part all|streams|guard_cost|overload|fairness|
                                                     cancel|migration]
                                                     [--quick] [--out FILE]

Everything runs as real processes on loopback: `caldera router` processes, enginesim engines
(8B-H100 profile, real-time clock where latencies are reported) and, for idle streams, a tiny
backend that opens an SSE stream and then holds it. Prints one JSON document.

- streams: router RSS idle and with N idle open streams (migration relay active on each),
  per-stream cost and the figure extrapolated to 10,000 when the descriptor limit caps N.
- guard_cost: heap per idle stream with and without migration relay, guard and fair gate.
- overload: a burst far beyond capacity against a router with an admission bound and busy
  thresholds: answers by status, Retry-After present, 503 latency, router RSS peak.
- fairness: a light user's TTFT alone, then while a heavy user floods, with and without the
  fair gate; the heavy user's queue waits.
- cancel: client disconnect -> engine's running count drops (ms, polled every 2 ms).
- migration: an engine SIGKILLed after N tokens; the stall the client sees and token exactness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as a script, this folder leads sys.path and benchmarks/router.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import aiohttp  # noqa: E402

from router.harness import Engines, free_port, route, server  # noqa: E402
from router.resilience.harness import engine_metric, open_streams, read_sse, start_router_process  # noqa: E402

PY = sys.executable
FAIR_TIME_SCALE = 0.5
ROUTES = {"modelServers": [server("m", model="base-model")],
          "modelRoutes": [route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])]}

HOLDING_BACKEND = r'''
import asyncio, sys
from aiohttp import web
async def handle(request):
    await request.read()
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b'data: {"id":"x","created":1,"choices":[{"index":0,"text":" a","finish_reason":null}]}\n\n')
    await asyncio.Event().wait()
    return resp
app = web.Application()
app.router.add_post("/v1/completions", handle)
app.router.add_get("/health", lambda r: web.Response(text="ok"))
app.router.add_get("/metrics", lambda r: web.Response(text=""))
app.router.add_get("/v1/models", lambda r: web.json_response({"data": []}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), backlog=8192, access_log=None, print=None)
'''


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1e3, 2)


# ---- idle streams --------------------------------------------------------------------------

async def idle_streams(tmp: Path, quick: bool) -> dict[str, Any]:
    hard = raise_nofile()
    port = free_port()
    backend = subprocess.Popen([PY, "-c", HOLDING_BACKEND, str(port)])
    try:
        router = await start_router_process(tmp, "streams", {
            **ROUTES, "accessLog": False, "kvEvents": False, "metricsInterval": 1.0,
            "endpoints": [{"name": "hold", "address": f"127.0.0.1:{port}", "labels": {"app": "m"}}],
            "fairness": {"maxConcurrent": 20_000}, "resilience": {"maxConcurrentRequests": 20_000}})
        try:
            idle = rss_mb(router.proc.pid)
            # Two sockets per stream in the router (client + upstream): the descriptor limit caps N.
            n = 2000 if quick else min(10_000, (hard - 300) // 2)
            t0 = time.perf_counter()
            writers, failed = await open_streams(int(router.url.rsplit(":", 1)[1]), n)
            opened_s = time.perf_counter() - t0
            held = rss_mb(router.proc.pid)
            async with aiohttp.ClientSession() as s:
                t1 = time.perf_counter()
                async with s.get(router.url + "/healthz") as r:
                    healthy = r.status == 200
                health_ms = (time.perf_counter() - t1) * 1e3
            for w in writers:
                w.close()
            per_kb = (held - idle) * 1024 / max(1, n - failed)
            return {"streams": n, "failed": failed, "nofile_hard_limit": hard, "open_seconds": round(opened_s, 2),
                    "router_rss_idle_mb": round(idle, 1), "router_rss_with_streams_mb": round(held, 1),
                    "kb_per_stream": round(per_kb, 2),
                    "router_rss_at_10000_streams_mb": round(idle + per_kb * 10_000 / 1024, 1),
                    "healthz_while_holding_ok": healthy, "healthz_while_holding_ms": round(health_ms, 2)}
        finally:
            router.stop()
    finally:
        backend.kill()
        backend.wait()


async def _heap_per_stream(extra: dict[str, Any], n: int) -> float:
    """Python heap (tracemalloc) per idle stream of an in-process router, this client included."""
    import gc
    import tracemalloc

    from aiohttp import web

    from router.config import RouterConfig
    from router.server import Router

    bport, port = free_port(), free_port()
    backend = subprocess.Popen([PY, "-c", HOLDING_BACKEND, str(bport)])
    try:
        cfg = RouterConfig.model_validate({
            **ROUTES, "port": port, "accessLog": False, "kvEvents": False, "metricsInterval": 5,
            "endpoints": [{"name": "hold", "address": f"127.0.0.1:{bport}", "labels": {"app": "m"}}], **extra})
        router = Router(cfg)
        router.load_static()
        runner = web.AppRunner(router.app, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", bport)
                w.close()
                break
            await asyncio.sleep(0.1)
        warm, _ = await open_streams(port, 20)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        writers, failed = await open_streams(port, n)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        for w in writers + warm:
            w.close()
        await runner.cleanup()
        return (held - base) / 1024 / max(1, n - failed)
    finally:
        backend.kill()
        backend.wait()


async def guard_cost(tmp: Path, quick: bool) -> dict[str, Any]:
    """What retries/migration relay, guard and fair gate add per idle stream (A/B, same process)."""
    n = 300 if quick else 1000
    plain = await _heap_per_stream({"resilience": {"migrationLimit": 0}}, n)
    guarded = await _heap_per_stream({"fairness": {"maxConcurrent": 100_000},
                                      "resilience": {"maxConcurrentRequests": 100_000}}, n)
    return {"streams": n, "heap_kb_per_stream_plain": round(plain, 2),
            "heap_kb_per_stream_guarded": round(guarded, 2), "added_kb_per_stream": round(guarded - plain, 2),
            "note": "Python heap of router + test client in one process (tracemalloc); the client's share "
                    "is the same in both runs"}


# ---- overload ------------------------------------------------------------------------------

async def overload(tmp: Path, quick: bool) -> dict[str, Any]:
    raise_nofile()
    engines = Engines(tmp)
    try:
        eps = [await engines.start(f"e{i}", "--max-num-seqs", "4", labels={"app": "m"}, time_scale=1.0)
               for i in range(2)]
        router = await start_router_process(tmp, "overload", {
            **ROUTES, "accessLog": False, "kvEvents": False, "metricsInterval": 0.1,
            "endpoints": [e.endpoint() for e in eps],
            "resilience": {"maxConcurrentRequests": 256, "retryAfter": 1,
                           "overload": {"maxWaiting": 4, "maxInflightPerEndpoint": 16}}})
        try:
            n, conc = (3000, 800) if quick else (10_000, 2000)
            base = rss_mb(router.proc.pid)
            peak = base
            stop = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, rss_mb(router.proc.pid))
                    await asyncio.sleep(0.05)

            cpu0 = cpu_s(router.proc.pid)
            sampler = asyncio.create_task(sample())
            statuses: dict[str, int] = {}
            retry_after = 0
            rejected_s: list[float] = []
            gate = asyncio.Semaphore(conc)
            body = {"model": "m", "prompt": "overload " * 50, "max_tokens": 64}
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn) as s:
                async def one() -> None:
                    nonlocal retry_after
                    async with gate:
                        t0 = time.perf_counter()
                        try:
                            async with s.post(router.url + "/v1/completions", json=body) as r:
                                await r.read()
                                key = str(r.status)
                                if r.status == 503:
                                    rejected_s.append(time.perf_counter() - t0)
                                    retry_after += "retry-after" in r.headers
                        except (aiohttp.ClientError, OSError) as exc:
                            key = type(exc).__name__
                        statuses[key] = statuses.get(key, 0) + 1

                t0 = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(n)))
                elapsed = time.perf_counter() - t0
            stop.set()
            await sampler
            after = rss_mb(router.proc.pid)
            cpu = cpu_s(router.proc.pid) - cpu0
            return {"requests": n, "client_concurrency": conc, "engines": "2 x enginesim 8b-h100, max-num-seqs 4",
                    "router": "maxConcurrentRequests 256, maxWaiting 4, maxInflightPerEndpoint 16",
                    "statuses": statuses, "rejections_with_retry_after": retry_after,
                    "rejection_latency_p50_ms": ms(pct(rejected_s, 50)),
                    "rejection_latency_p99_ms": ms(pct(rejected_s, 99)),
                    "seconds": round(elapsed, 2), "router_cpu_seconds": round(cpu, 2),
                    "router_cpu_ms_per_request": round(cpu * 1e3 / n, 3), "router_rss_before_mb": round(base, 1),
                    "router_rss_peak_mb": round(peak, 1), "router_rss_after_mb": round(after, 1)}
        finally:
            router.stop()
    finally:
        engines.stop()


# ---- fairness ------------------------------------------------------------------------------

async def _ttft(s: aiohttp.ClientSession, url: str, user: str, max_tokens: int, prompt: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    async with s.post(url + "/v1/completions", json={"model": "m", "prompt": prompt, "max_tokens": max_tokens,
                                                      "stream": True}, headers={"x-user-id": user}) as r:
        first: float | None = None
        async for line in r.content:
            if first is None and line.startswith(b"data: "):
                first = time.perf_counter() - t0
        wait = int(r.headers.get("x-caldera-queue-wait-ms", "0"))
    return (first if first is not None else float("nan")), wait


async def _fair_run(tmp: Path, name: str, fairness: dict[str, Any] | None, quick: bool) -> dict[str, Any]:
    engines = Engines(tmp / name)
    (tmp / name).mkdir(exist_ok=True)
    try:
        # Half-speed clock: this shared machine's CPU contention then weighs less against engine time.
        eng = await engines.start("e", labels={"app": "m"}, time_scale=FAIR_TIME_SCALE)
        cfg: dict[str, Any] = {**ROUTES, "accessLog": False, "kvEvents": False, "endpoints": [eng.endpoint()]}
        if fairness:
            cfg["fairness"] = fairness
        router = await start_router_process(tmp / name, "fair", cfg)
        samples = 10 if quick else 25
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                solo = [(await _ttft(s, router.url, "light", 4, f"light question {i}"))[0] for i in range(samples)]
                stop = asyncio.Event()
                heavy_waits: list[int] = []
                heavy_done = 0

                async def flood() -> None:
                    nonlocal heavy_done
                    i = 0
                    while not stop.is_set():
                        i += 1
                        _, wait = await _ttft(s, router.url, "heavy", 64, f"heavy prompt {i} " * 20)
                        heavy_waits.append(wait)
                        heavy_done += 1

                floods = [asyncio.create_task(flood()) for _ in range(24)]
                await asyncio.sleep(1.5)  # let the flood fill the engine (and the gate's queue)
                t0 = time.perf_counter()
                loaded = [(await _ttft(s, router.url, "light", 4, f"light question {i}"))[0]
                          for i in range(samples)]
                elapsed = time.perf_counter() - t0
                stop.set()
                await asyncio.gather(*floods)
            p50_solo, p50_loaded = statistics.median(solo), statistics.median(loaded)
            return {"light_ttft_solo_p50_ms": ms(p50_solo), "light_ttft_flooded_p50_ms": ms(p50_loaded),
                    "light_ttft_flooded_p90_ms": ms(pct(loaded, 90)), "ratio_p50": round(p50_loaded / p50_solo, 2),
                    "heavy_requests_done": heavy_done, "heavy_rps_during_light_probe": round(heavy_done / max(
                        elapsed, 1e-9), 2), "heavy_queue_wait_p50_ms": pct(heavy_waits, 50),
                    "heavy_queue_wait_p90_ms": pct(heavy_waits, 90)}
        finally:
            router.stop()
    finally:
        engines.stop()


async def fairness(tmp: Path, quick: bool) -> dict[str, Any]:
    gate = {"maxConcurrent": 8, "reservedSlots": 2}
    with_gate = await _fair_run(tmp, "with-gate", gate, quick)
    without = await _fair_run(tmp, "no-gate", None, quick)
    return {"setup": f"1 enginesim 8b-h100 (16 seqs, --time-scale {FAIR_TIME_SCALE}; times in real ms); heavy "
                     "user: 24 concurrent streams of 64 tokens; light user: sequential 4-token streams; gate "
                     "maxConcurrent 8, reservedSlots 2",
            "with_fairness": with_gate, "without_fairness": without,
            "target_light_ttft_within_2x_solo": with_gate["ratio_p50"] <= 2.0}


# ---- cancellation --------------------------------------------------------------------------

async def cancellation(tmp: Path, quick: bool) -> dict[str, Any]:
    engines = Engines(tmp)
    try:
        eng = await engines.start("e", labels={"app": "m"}, time_scale=1.0)
        router = await start_router_process(tmp, "cancel", {**ROUTES, "accessLog": False, "kvEvents": False,
                                                            "endpoints": [eng.endpoint()]})
        try:
            drops: list[float] = []
            async with aiohttp.ClientSession() as probe:
                for _ in range(5 if quick else 20):
                    client = aiohttp.ClientSession()
                    resp = await client.post(router.url + "/v1/completions", json={
                        "model": "m", "prompt": "cancel me", "max_tokens": 2000, "stream": True})
                    async for line in resp.content:
                        if line.startswith(b"data: "):
                            break
                    t0 = time.perf_counter()
                    resp.close()
                    await client.close()
                    while await engine_metric(probe, eng.url, "vllm:num_requests_running") > 0:
                        await asyncio.sleep(0.002)
                    drops.append(time.perf_counter() - t0)
            return {"samples": len(drops), "disconnect_to_engine_abort_p50_ms": ms(pct(drops, 50)),
                    "p90_ms": ms(pct(drops, 90)), "max_ms": ms(max(drops)),
                    "target_within_100ms": max(drops) <= 0.1}
        finally:
            router.stop()
    finally:
        engines.stop()


# ---- migration -----------------------------------------------------------------------------

async def migration(tmp: Path, quick: bool) -> dict[str, Any]:
    engines = Engines(tmp)
    try:
        crash = await engines.start("a-crash", "--crash-after-tokens", "20", labels={"app": "m"}, time_scale=1.0)
        healthy = await engines.start("b-ok", labels={"app": "m"}, time_scale=1.0)
        body = {"model": "m", "prompt": "a story " * 100, "max_tokens": 60, "stream": True}
        async with aiohttp.ClientSession() as s:
            async with s.post(healthy.url + "/v1/completions", json={**body, "model": "base-model"}) as r:
                reference = [e for e in await read_sse(r)]
            router = await start_router_process(tmp, "migrate", {
                **ROUTES, "profile": "round-robin", "accessLog": False, "kvEvents": False, "metricsInterval": 30,
                "endpoints": [crash.endpoint(), healthy.endpoint()]})
            try:
                stamps: list[float] = []
                texts: list[str] = []
                async with s.post(router.url + "/v1/completions", json=body) as r:
                    async for line in r.content:
                        if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                            stamps.append(time.perf_counter())
                            texts.append(json.loads(line[6:])["choices"][0]["text"])
            finally:
                router.stop()
        ref_texts = [json.loads(e)["choices"][0]["text"] for e in reference if e != b"[DONE]"]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        return {"tokens": len(texts), "identical_to_unbroken_run": texts == ref_texts,
                "crashed_engine_exit_code": crash.proc.wait(10), "typical_itl_ms": ms(statistics.median(gaps)),
                "stall_at_migration_ms": ms(max(gaps)),
                "prompt_tokens": 200, "note": "the stall includes the new pod's prefill of prompt + 20 tokens"}
    finally:
        engines.stop()


PARTS = {"streams": idle_streams, "guard_cost": guard_cost, "overload": overload, "fairness": fairness, "cancel": cancellation,
         "migration": migration}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["all", *PARTS])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} shared vCPUs, load avg {os.getloadavg()[0]:.1f}"}
    with tempfile.TemporaryDirectory(prefix="router-resilience-") as d:
        for name, fn in PARTS.items():
            if args.part in ("all", name):
                sub = Path(d) / name
                sub.mkdir()
                result[name] = await fn(sub, args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with contextlib.suppress(OSError):
            Path(args.out).write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
