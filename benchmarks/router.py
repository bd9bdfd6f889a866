"""Router benchmark: routing quality on enginesim pods and proxy overhead; prints JSON.

    .venv/bin/python benchmarks/router.py [--part quality|overhead|all] [--out FILE] [--quick]

Quality: 8 enginesim processes (8B-H100 latency profile, clock compressed with --time-scale),
one fresh router process per strategy, three workloads: shared-prefix groups whose total
prefix exceeds the pods' combined KV cache (Poisson arrivals rising to saturation), multi-turn
chat, and unique prompts (no shared prefix). Latencies are reported in simulated seconds.

Overhead: one router process pinned to one core in front of a static nginx backend vs the
backend direct (open-loop fixed-rate load, latency measured from the scheduled send time),
maximum req/s with wrk, router memory at 10,000 open streams, and Debian's nginx as a
round-robin proxy on the same core for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder leads sys.path and its siblings (router.py, enginesim.py)
# would shadow the packages of the same names.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from router.resilience.harness import open_streams  # noqa: E402

PY = sys.executable
NOFILE = 200_000


def _die_with_parent() -> None:
    """Child processes get SIGTERM when the benchmark dies, so none outlive an interrupted run."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def raise_nofile() -> None:
    _die_with_parent()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port not handed out before in this run (the kernel may offer a port
    again once its probe socket is closed, before the process meant to bind it has)."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else float("nan")


async def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process for {url} exited with {proc.returncode}")
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready within {timeout}s")
            await asyncio.sleep(0.1)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_router(cfg: dict[str, Any], workdir: Path, name: str, cpu: str | None = None,
                 extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [PY, "-m", "caldera.cli", "--log-format", "json", "router", "--config", str(path), *extra]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=raise_nofile, cwd=ROOT)


# ---------------------------------------------------------------------------------------------
# Overhead
# ---------------------------------------------------------------------------------------------

BACKEND_BODY = ('{"id":"cmpl-static","object":"text_completion","created":0,"model":"static",'
                '"choices":[{"index":0,"text":" ok","finish_reason":"length"}],'
                '"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}')
REQUEST_BODY = json.dumps({"model": "bench", "prompt": "Say ok. " * 8, "max_tokens": 1}).encode()


def nginx_conf(workdir: Path, listen: int, body: str | None = None, upstream: int | None = None,
               cpu_mask: str | None = None) -> Path:
    """A one-worker nginx: a static JSON backend, or a round-robin proxy to `upstream`."""
    if upstream is not None:
        location = ("proxy_pass http://backend; proxy_http_version 1.1; "
                    "proxy_set_header Connection \"\"; proxy_buffering off;")
        ups = f"upstream backend {{ server 127.0.0.1:{upstream}; keepalive 256; }}"
    else:
        location = f"default_type application/json; return 200 '{body}';"
        ups = ""
    affinity = f"worker_cpu_affinity {cpu_mask};" if cpu_mask else ""
    conf = f"""
worker_processes 1; {affinity}
worker_rlimit_nofile {NOFILE};
pid {workdir}/nginx-{listen}.pid;
error_log {workdir}/nginx-{listen}.err warn;
events {{ worker_connections 60000; multi_accept on; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  client_body_temp_path {workdir}/body-{listen}; proxy_temp_path {workdir}/proxy-{listen};
  fastcgi_temp_path {workdir}/fcgi-{listen}; uwsgi_temp_path {workdir}/uwsgi-{listen};
  scgi_temp_path {workdir}/scgi-{listen};
  {ups}
  server {{ listen 127.0.0.1:{listen} backlog=4096; location / {{ {location} }} }}
}}
"""
    path = workdir / f"nginx-{listen}.conf"
    path.write_text(conf)
    return path


def nginx_worker(master: int) -> int | None:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def start_nginx(conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["nginx", "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=raise_nofile)


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that reads Content-Length responses."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        m = re.search(rb"(?i)content-length:\s*(\d+)", bytes(self.buf[:end]))
        length = int(m.group(1)) if m else 0
        if len(self.buf) >= end + 4 + length:
            status = int(self.buf[9:12])
            del self.buf[: end + 4 + length]
            if not self.waiter.done():
                self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


async def open_loop(port: int, path: str, body: bytes, rate: float, duration: float) -> dict[str, Any]:
    """Send at a fixed rate regardless of responses; latency counts from the scheduled time."""
    loop = asyncio.get_running_loop()
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    idle: deque[_Conn] = deque()
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = idle.pop() if idle else None
        if conn is None or conn.lost:
            _, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
        conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            status = await conn.waiter
        except ConnectionError:
            errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)
        if status != 200:
            errors += 1
        conn.waiter = None
        idle.append(conn)

    # Warm the connection pool so connection set-up is not measured.
    await asyncio.gather(*(one(time.perf_counter()) for _ in range(min(64, int(rate / 20) + 4))))
    latencies.clear()
    n = int(rate * duration)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(at)))
    await asyncio.gather(*tasks)
    for c in idle:
        if c.transport is not None:
            c.transport.close()
    return {"rate": rate, "sent": n, "errors": errors, "p50_ms": pct(latencies, 50) * 1e3,
            "p99_ms": pct(latencies, 99) * 1e3, "achieved_rps": len(latencies) / duration}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_max_rps(port: int, path: str, workdir: Path, seconds: int, connections: int = 64,
                pid: int | None = None) -> dict[str, Any]:
    """wrk's req/s; with `pid`, also requests per CPU-second of that process (this machine's cores
    are shared, so CPU time per request is the contention-free measure of one core's capacity)."""
    script = workdir / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(REQUEST_BODY.decode())}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
           f"http://127.0.0.1:{port}{path}"]
    cpu0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, preexec_fn=raise_nofile).stdout
    cpu1 = cpu_seconds(pid) if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res: dict[str, Any] = {"rps": rps, "connections": connections,
                           "non_2xx": int(non2xx.group(1)) if non2xx else 0}
    if pid and cpu1 > cpu0:
        res["cpu_us_per_request"] = (cpu1 - cpu0) / total * 1e6
        res["rps_per_cpu_second"] = total / (cpu1 - cpu0)
    return res


SSE_BACKEND = r'''
import asyncio, sys, resource
from aiohttp import web
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def handle(request):
    await request.read()
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b'data: {"choices":[{"text":"hi"}]}\n\n')
    await asyncio.Event().wait()
app = web.Application()
app.router.add_post("/v1/completions", handle)
app.router.add_get("/health", lambda r: web.Response(text="ok"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), backlog=8192, access_log=None, print=None)
'''


def static_router_config(port: int, backend: int, **extra: Any) -> dict[str, Any]:
    return {
        "port": port, "accessLog": True, "metricsInterval": 1.0,
        "modelServers": [{"metadata": {"name": "static"}, "spec": {"model": "static", "inferenceEngine": "vLLM", "workloadPort": {"port": 8000},
                                                                   "workloadSelector": {"matchLabels": {"app": "static"}}}}],
        "modelRoutes": [{"metadata": {"name": "bench"}, "spec": {"modelName": "bench", "rules": [
            {"targetModels": [{"modelServerName": "static"}]}]}}],
        "endpoints": [{"name": "static-0", "address": f"127.0.0.1:{backend}", "labels": {"app": "static"}}],
        **extra,
    }


async def overhead(workdir: Path, quick: bool) -> dict[str, Any]:
    raise_nofile()
    duration = 3.0 if quick else 6.0
    backend_port, router_port, proxy_port, sse_port, sse_router_port = (free_port() for _ in range(5))
    backend = start_nginx(nginx_conf(workdir, backend_port, body=BACKEND_BODY))
    proxy = start_nginx(nginx_conf(workdir, proxy_port, upstream=backend_port))
    # Not pinned: the router is one Python thread (one event loop), so it uses at most one core
    # by construction, and on this shared 2-vCPU machine pinning only adds contention.
    router = start_router(static_router_config(router_port, backend_port), workdir, "router-overhead")
    procs = [backend, proxy, router]
    result: dict[str, Any] = {"setup": {"backend": "nginx return 200 (1 worker)",
                                        "router": "caldera router (one thread), default profile, JSON access log",
                                        "nginx_proxy": "nginx 1 worker, keepalive upstream",
                                        "load": "open-loop fixed rate (python+uvloop); max: wrk -t1 -c64",
                                        "machine": f"{os.cpu_count()} shared vCPUs, load avg {os.getloadavg()[0]:.1f}"}}
    try:
        await wait_http(f"http://127.0.0.1:{router_port}/readyz", proc=router)
        await wait_http(f"http://127.0.0.1:{proxy_port}/", timeout=10)
        for rate in (500, 2000):
            direct = await open_loop(backend_port, "/v1/completions", REQUEST_BODY, rate, duration)
            via_router = await open_loop(router_port, "/v1/completions", REQUEST_BODY, rate, duration)
            via_nginx = await open_loop(proxy_port, "/v1/completions", REQUEST_BODY, rate, duration)
            result[f"at_{rate}_rps"] = {
                "direct": direct, "router": via_router, "nginx_proxy": via_nginx,
                "router_added_p50_ms": via_router["p50_ms"] - direct["p50_ms"],
                "router_added_p99_ms": via_router["p99_ms"] - direct["p99_ms"],
                "nginx_added_p50_ms": via_nginx["p50_ms"] - direct["p50_ms"],
                "nginx_added_p99_ms": via_nginx["p99_ms"] - direct["p99_ms"],
            }
        secs = 4 if quick else 8
        result["max_rps_one_core"] = {
            "router": wrk_max_rps(router_port, "/v1/completions", workdir, secs, pid=router.pid),
            "nginx_proxy": wrk_max_rps(proxy_port, "/v1/completions", workdir, secs, pid=nginx_worker(proxy.pid)),
            "direct_backend": wrk_max_rps(backend_port, "/v1/completions", workdir, secs),
        }
        result["router_rss_mb_after_load"] = rss_mb(router.pid)
        # Memory at 10,000 open streams: a backend that holds every SSE stream open.
        sse = subprocess.Popen([PY, "-c", SSE_BACKEND, str(sse_port)], preexec_fn=raise_nofile)
        sse_router = start_router(static_router_config(sse_router_port, sse_port, accessLog=False),
                                  workdir, "router-streams")
        procs += [sse, sse_router]
        await wait_http(f"http://127.0.0.1:{sse_port}/health", proc=sse)
        await wait_http(f"http://127.0.0.1:{sse_router_port}/readyz", proc=sse_router)
        idle_rss = rss_mb(sse_router.pid)
        # Each stream holds two sockets in the router (client + upstream); this sandbox's hard
        # RLIMIT_NOFILE caps a process below 2 x 10,000, so measure as many as fit and extrapolate.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        n = 2000 if quick else min(10_000, (hard - 400) // 2)
        writers, failed = await open_streams(sse_router_port, n, concurrency=500, model="bench", until=b"data: ")
        held_rss = rss_mb(sse_router.pid)
        for w in writers:
            w.close()
        per_stream_kb = (held_rss - idle_rss) * 1024 / max(1, n - failed)
        result["open_streams"] = {"streams": n, "failed": failed, "nofile_hard_limit": hard,
                                  "router_rss_idle_mb": idle_rss, "router_rss_open_mb": held_rss,
                                  "kb_per_stream": per_stream_kb,
                                  "router_rss_at_10000_streams_mb": idle_rss + per_stream_kb * 10_000 / 1024}
    finally:
        for p in reversed(procs):
            stop(p)
    t = result["at_500_rps"]
    result["targets"] = {
        "added_p50_le_1ms_at_500": t["router_added_p50_ms"] <= 1.0,
        "added_p99_le_5ms_at_500": t["router_added_p99_ms"] <= 5.0,
        "ge_3000_rps_one_core": max(result["max_rps_one_core"]["router"]["rps"],
                                    result["max_rps_one_core"]["router"].get("rps_per_cpu_second", 0)) >= 3000,
    }
    return result


# ---------------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------------

STRATEGIES = ["random", "round-robin", "least-request", "prefix", "precise", "default"]


@dataclass
class Result:
    ok: bool
    sent_at: float
    ttft: float | None = None
    done_at: float | None = None
    tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class Workload:
    """Requests as (send time in simulated seconds, body, conversation id or None)."""

    name: str
    items: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    chat_users: int = 0
    chat_turns: int = 0


def words(rng: random.Random, n: int) -> str:
    from enginesim.tokenizer import VOCAB

    return " ".join(rng.choice(VOCAB) for _ in range(n))


def shared_prefix_workload(groups: int, per_group: int, prefix_tokens: int, question_tokens: int,
                           output_tokens: int, rate_from: float, rate_to: float, seed: int = 1) -> Workload:
    """Groups sharing a long system prompt; Poisson arrivals whose rate rises linearly."""
    rng = random.Random(seed)
    prefixes = [words(rng, prefix_tokens) for _ in range(groups)]
    reqs = [(g, words(rng, question_tokens)) for g in range(groups) for _ in range(per_group)]
    rng.shuffle(reqs)
    n = len(reqs)
    t = 0.0
    w = Workload("shared_prefix")
    for i, (g, q) in enumerate(reqs):
        rate = rate_from + (rate_to - rate_from) * i / max(1, n - 1)
        t += rng.expovariate(rate)
        w.items.append((t, {"prompt": prefixes[g] + " " + q, "max_tokens": output_tokens}))
    return w


def unique_workload(n: int, prompt_tokens: int, output_tokens: int, rate: float, seed: int = 2) -> Workload:
    rng = random.Random(seed)
    w = Workload("no_shared_prefix")
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(rate)
        w.items.append((t, {"prompt": words(rng, prompt_tokens), "max_tokens": output_tokens}))
    return w


async def send(session: aiohttp.ClientSession, url: str, body: dict[str, Any], chat: bool) -> Result:
    loop = asyncio.get_running_loop()
    res = Result(ok=False, sent_at=loop.time())
    payload = {"model": "llama", "stream": True, "stream_options": {"include_usage": True}, **body}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    text: list[str] = []
    try:
        async with session.post(url + path, json=payload) as r:
            if r.status != 200:
                await r.read()
                return res
            async for line in r.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                ev = json.loads(line[6:])
                choices = ev.get("choices") or []
                if choices:
                    piece = choices[0].get("text") if not chat else (choices[0].get("delta") or {}).get("content")
                    if piece:
                        if res.ttft is None:
                            res.ttft = loop.time() - res.sent_at
                        res.tokens += 1
                        text.append(piece)
                usage = ev.get("usage")
                if usage:
                    res.prompt_tokens = usage.get("prompt_tokens", 0)
                    res.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        res.done_at = loop.time()
        res.ok = True
    except (aiohttp.ClientError, TimeoutError, ValueError):
        pass
    res_text = "".join(text)
    res.__dict__["text"] = res_text
    return res


def summarize(results: list[Result], scale: float, wall: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok and r.ttft is not None and r.done_at is not None]
    ttfts = [r.ttft * scale for r in ok if r.ttft is not None]
    itls = [((r.done_at - r.sent_at - r.ttft) * scale) / (r.tokens - 1)  # type: ignore[operator]
            for r in ok if r.tokens > 1]
    prompt = sum(r.prompt_tokens for r in ok)
    sim_wall = wall * scale
    return {
        "requests": len(results), "completed": len(ok), "failed": len(results) - len(ok),
        "throughput_rps": len(ok) / sim_wall if sim_wall else 0.0,
        "output_tok_s": sum(r.tokens for r in ok) / sim_wall if sim_wall else 0.0,
        "ttft_p50_s": pct(ttfts, 50), "ttft_p90_s": pct(ttfts, 90), "ttft_p99_s": pct(ttfts, 99),
        "itl_mean_ms": statistics.fmean(itls) * 1e3 if itls else None,
        "prefix_hit_rate": sum(r.cached_tokens for r in ok) / prompt if prompt else 0.0,
        "makespan_s": sim_wall,
    }


async def run_open(url: str, w: Workload, scale: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        start = loop.time()
        tasks = []
        for at, body in w.items:
            delay = start + at / scale - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(send(s, url, body, chat=False)))
        results = await asyncio.gather(*tasks)
        wall = loop.time() - start
    return summarize(list(results), scale, wall)


async def run_chat(url: str, users: int, turns: int, system_tokens: int, question_tokens: int,
                   output_tokens: int, think_s: float, scale: float, seed: int = 3) -> dict[str, Any]:
    """Multi-turn chat: each user sends its next turn (with the whole history) after a think time."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    systems = [words(rng, system_tokens) for _ in range(max(1, users // 4))]
    results: list[Result] = []

    async def user(u: int, s: aiohttp.ClientSession) -> None:
        urng = random.Random(seed * 1000 + u)
        messages = [{"role": "system", "content": systems[u % len(systems)]}]
        await asyncio.sleep(urng.uniform(0, think_s) / scale)
        for _ in range(turns):
            messages.append({"role": "user", "content": words(urng, question_tokens)})
            res = await send(s, url, {"messages": messages, "max_tokens": output_tokens}, chat=True)
            results.append(res)
            messages.append({"role": "assistant", "content": res.__dict__.get("text", "")})
            await asyncio.sleep(urng.expovariate(1 / think_s) / scale)

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        start = loop.time()
        await asyncio.gather(*(user(u, s) for u in range(users)))
        wall = loop.time() - start
    return summarize(results, scale, wall)


@dataclass
class QualitySetup:
    pods: int = 8
    time_scale: float = 4.0
    num_gpu_blocks: int = 2048  # 32K tokens per pod; the workload is sized against it
    block_size: int = 16


def start_engines(setup: QualitySetup, workdir: Path, engine_dir: Path | None = None) -> list[dict[str, Any]]:
    """8 enginesim processes; from `engine_dir` (a snapshot of the package) when given."""
    env = dict(os.environ)
    if engine_dir is not None:
        env["PYTHONPATH"] = f"{engine_dir}:{env.get('PYTHONPATH', '')}"
    engines = []
    for i in range(setup.pods):
        port, kv, replay = free_port(), free_port(), free_port()
        cmd = [PY, "-m", "enginesim", "--host", "127.0.0.1", "--port", str(port), "--model", "llama",
               "--profile", "8b-h100", "--time-scale", str(setup.time_scale),
               "--num-gpu-blocks", str(setup.num_gpu_blocks), "--block-size", str(setup.block_size),
               "--max-waiting-queue-length", "100000",
               "--kv-events-config", json.dumps({"enable_kv_cache_events": True, "publisher": "zmq",
                                                 "endpoint": f"tcp://*:{kv}", "replay_endpoint": f"tcp://*:{replay}",
                                                 "topic": f"kv@pod-{i}@llama"})]
        log = (workdir / f"engine-{i}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                cwd=engine_dir or ROOT, env=env)
        engines.append({"proc": proc, "port": port, "endpoint": {
            "name": f"pod-{i}", "address": f"127.0.0.1:{port}", "labels": {"app": "llama"},
            "kvEvents": f"tcp://127.0.0.1:{kv}", "kvReplay": f"tcp://127.0.0.1:{replay}"}})
    return engines


async def engine_lag(engines: list[dict[str, Any]]) -> dict[str, float]:
    """Event-loop lag of the engines during the run (real seconds): the simulation's fidelity.

    The simulated clock is real time x time_scale, so a starved engine stretches every
    simulated duration; a p99 lag well below the ITL / time_scale means the figures hold."""
    lags: list[float] = []
    async with aiohttp.ClientSession() as s:
        for e in engines:
            async with s.get(f"http://127.0.0.1:{e['port']}/debug/stats") as r:
                stats = (await r.json())["event_loop_lag_seconds"]
                lags.append(stats.get("p99") or 0.0)
            await s.post(f"http://127.0.0.1:{e['port']}/debug/reset_loop_lag")
    return {"p99_max_s": max(lags), "p99_mean_s": statistics.fmean(lags)}


async def reset_engines(engines: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as s:
        for e in engines:
            deadline = time.monotonic() + 60
            while True:
                async with s.post(f"http://127.0.0.1:{e['port']}/reset_prefix_cache") as r:
                    if r.status == 200 and (await r.text()).strip().lower() not in ("false",):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("engine did not become idle to reset its prefix cache")
                await asyncio.sleep(0.2)


EXTRA_PROFILES: dict[str, Any] = {}


def quality_router_config(port: int, engines: list[dict[str, Any]], profile: str) -> dict[str, Any]:
    return {
        "profiles": EXTRA_PROFILES,
        "port": port, "profile": profile, "accessLog": False, "metricsInterval": 0.1,
        "tokenizer": "enginesim:whitespace", "kvEvents": profile not in ("random", "round-robin", "least-request", "prefix"),
        "prefixIndex": {"lruCapacity": 2048},
        "modelServers": [{"metadata": {"name": "llama"}, "spec": {"model": "llama", "inferenceEngine": "vLLM", "workloadPort": {"port": 8000},
                                                                  "workloadSelector": {"matchLabels": {"app": "llama"}}}}],
        "modelRoutes": [{"metadata": {"name": "llama"}, "spec": {"modelName": "llama", "rules": [
            {"targetModels": [{"modelServerName": "llama"}]}]}}],
        "endpoints": [e["endpoint"] for e in engines],
    }


WORKLOADS = ["shared_prefix", "multi_turn_chat", "no_shared_prefix"]


async def quality(workdir: Path, quick: bool, strategies: Sequence[str],
                  workloads: Sequence[str] = tuple(WORKLOADS), time_scale: float = 1.0,
                  engine_dir: Path | None = None, no_shared_rate: float | None = None,
                  no_shared_requests: int | None = None) -> dict[str, Any]:
    setup = QualitySetup(time_scale=time_scale)
    cluster_kv_tokens = setup.pods * setup.num_gpu_blocks * setup.block_size
    # Groups of requests sharing a 6,000-token system prompt (Kthena's and llm-d's shape); the
    # groups' prefixes together exceed the pods' combined KV cache.
    if quick:
        shared = shared_prefix_workload(groups=48, per_group=12, prefix_tokens=6000, question_tokens=100,
                                        output_tokens=24, rate_from=4, rate_to=50)
    else:
        shared = shared_prefix_workload(groups=64, per_group=16, prefix_tokens=6000, question_tokens=100,
                                        output_tokens=24, rate_from=4, rate_to=60)
    prefix_total = len({it[1]["prompt"][:200] for it in shared.items}) * 6000
    unique = unique_workload(n=no_shared_requests or (150 if quick else 300), prompt_tokens=1000,
                             output_tokens=24, rate=no_shared_rate or (12 if quick else 14))
    engines = start_engines(setup, workdir, engine_dir)
    out: dict[str, Any] = {"setup": {
        "pods": setup.pods, "profile": "8b-h100", "time_scale": setup.time_scale,
        "kv_blocks_per_pod": setup.num_gpu_blocks, "block_size": setup.block_size,
        "cluster_kv_tokens": cluster_kv_tokens, "shared_prefix_total_tokens": prefix_total,
        "shared_prefix_requests": len(shared.items), "unique_requests": len(unique.items),
        "unique_rate_rps": no_shared_rate or (12 if quick else 14),
        "latencies": "simulated seconds (real x time_scale)"}, "shared_prefix": {}, "multi_turn_chat": {},
        "no_shared_prefix": {}}
    try:
        for e in engines:
            await wait_http(f"http://127.0.0.1:{e['port']}/health", proc=e["proc"])
        for strategy in strategies:
            for wname in workloads:
                if wname == "no_shared_prefix" and strategy in ("round-robin", "prefix", "precise"):
                    continue  # nothing to share: these compare as least-request or random do
                await reset_engines(engines)
                port = free_port()
                router = start_router(quality_router_config(port, engines, strategy), workdir,
                                      f"router-{strategy}-{wname}")
                try:
                    await wait_http(f"http://127.0.0.1:{port}/readyz", proc=router)
                    url = f"http://127.0.0.1:{port}"
                    if wname == "shared_prefix":
                        res = await run_open(url, shared, setup.time_scale)
                    elif wname == "no_shared_prefix":
                        res = await run_open(url, unique, setup.time_scale)
                    else:
                        res = await run_chat(url, users=32 if quick else 48, turns=4 if quick else 5,
                                             system_tokens=2000, question_tokens=150, output_tokens=48,
                                             think_s=5.0, scale=setup.time_scale)
                    res["engine_loop_lag"] = await engine_lag(engines)
                finally:
                    stop(router)
                out[wname][strategy] = res
                print(json.dumps({"progress": wname, "strategy": strategy, **res}), file=sys.stderr, flush=True)
    finally:
        for e in engines:
            stop(e["proc"])
    sp = out["shared_prefix"]
    if "random" in sp and "default" in sp and sp["random"]["throughput_rps"]:
        out["targets"] = {
            "throughput_vs_random": sp["default"]["throughput_rps"] / sp["random"]["throughput_rps"],
            "ttft_p50_vs_random": (sp["default"]["ttft_p50_s"] or 0) / (sp["random"]["ttft_p50_s"] or 1),
        }
        ns = out["no_shared_prefix"]
        if "least-request" in ns and "default" in ns:
            out["targets"]["no_shared_prefix_throughput_vs_least_request"] = (
                ns["default"]["throughput_rps"] / ns["least-request"]["throughput_rps"])
            out["targets"]["no_shared_prefix_ttft_p50_vs_least_request"] = (
                (ns["default"]["ttft_p50_s"] or 0) / (ns["least-request"]["ttft_p50_s"] or 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["quality", "overhead", "all"], default="all")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="enginesim clock speed-up; 1 keeps fidelity on a loaded machine")
    ap.add_argument("--enginesim-rev", help="run the engines from this git revision of enginesim/ "
                    "(a snapshot), not the working tree")
    ap.add_argument("--profiles", type=Path, help="YAML mapping of extra profiles to compare (by name in --strategies)")
    ap.add_argument("--quick", action="store_true", help="smaller workloads (about a third of the time)")
    ap.add_argument("--no-shared-rate", type=float, help="arrival rate (req/s) of the no-shared-prefix workload")
    ap.add_argument("--no-shared-requests", type=int, help="requests in the no-shared-prefix workload")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    import uvloop

    workdir = Path(tempfile.mkdtemp(prefix="caldera-router-bench-"))
    result: dict[str, Any] = {"benchmark": "router", "workdir": str(workdir)}
    started = time.monotonic()
    if args.profiles:
        EXTRA_PROFILES.update(yaml.safe_load(args.profiles.read_text()) or {})
    engine_dir = None
    if args.enginesim_rev:
        engine_dir = workdir / "enginesim-snapshot"
        engine_dir.mkdir()
        archive = subprocess.run(["git", "archive", args.enginesim_rev, "enginesim"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(engine_dir)], input=archive, check=True)
        result["enginesim_rev"] = subprocess.run(["git", "rev-parse", "--short", args.enginesim_rev], cwd=ROOT,
                                                 capture_output=True, text=True).stdout.strip()

    async def run() -> None:
        if args.part in ("overhead", "all"):
            result["overhead"] = await overhead(workdir, args.quick)
        if args.part in ("quality", "all"):
            result["quality"] = await quality(workdir, args.quick, args.strategies.split(","),
                                              args.workloads.split(","), args.time_scale, engine_dir,
                                              args.no_shared_rate, args.no_shared_requests)

    uvloop.run(run())
    result["runtime_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
