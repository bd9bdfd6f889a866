"""Real processes for resilience tests and benchmarks: router processes, a private redis-server.

Nothing is mocked: the router runs as `caldera router --config FILE` (so SIGTERM, drain and
handler cancellation are the production paths) and Redis is Debian's `redis-server` on a
loopback port with our own throw-away configuration, never the system service.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from router.harness import free_port, wait_until


@dataclass
class RouterProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


async def start_router_process(tmp: Path, name: str, config: dict[str, Any]) -> RouterProcess:
    port = config.setdefault("port", free_port())
    config.setdefault("metricsInterval", 0.05)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "caldera.cli", "router", "--config", str(path)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    rp = RouterProcess(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    async with aiohttp.ClientSession() as s:
        async def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"router {name} exited: {log.read_text()[-3000:]}")
            try:
                async with s.get(f"{rp.url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    return r.status == 200
            except (aiohttp.ClientError, TimeoutError, OSError):
                return False

        await wait_until(ready, timeout=30)
    return rp


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def redis_server_binary() -> str:
    """Debian's redis-server; installed with apt-get when missing (CI runs as root)."""
    found = shutil.which("redis-server")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "redis-server"]
    if subprocess.run(install, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL, env=env)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL, env=env)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed and apt-get could not install it")
    return found


async def start_redis(tmp: Path) -> RedisServer:
    port = free_port()
    conf = tmp / "redis.conf"
    conf.write_text(f"bind 127.0.0.1\nport {port}\nsave \"\"\nappendonly no\ndir {tmp}\n"
                    "daemonize no\nprotected-mode yes\nlogfile \"\"\n")
    proc = subprocess.Popen([redis_server_binary(), str(conf)], stdout=(tmp / "redis.log").open("wb"),
                            stderr=subprocess.STDOUT)
    server = RedisServer(port=port, proc=proc)

    async def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {(tmp / 'redis.log').read_text()[-2000:]}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await wait_until(up, timeout=20)
    return server


async def engine_metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    """Sum of one metric's samples on an engine's /metrics."""
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def read_sse(resp: aiohttp.ClientResponse) -> list[bytes]:
    """Every `data:` payload of an SSE response, in order."""
    events: list[bytes] = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            events.append(line[6:].strip())
    return events


async def open_streams(port: int, n: int, *, concurrency: int = 400, model: str = "m",
                       until: bytes = b"\n\n") -> tuple[list[asyncio.StreamWriter], int]:
    """Open `n` streaming completions on 127.0.0.1:`port` and keep them open (for memory
    per idle stream); each is counted open once its response head and `until` arrived.
    Returns the writers (close them to end the streams) and how many failed."""
    body = json.dumps({"model": model, "prompt": "hold", "max_tokens": 1000, "stream": True}).encode()
    req = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    writers: list[asyncio.StreamWriter] = []
    failed = 0
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        nonlocal failed
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(req)
                head = await asyncio.wait_for(reader.readuntil(until), 30)
                if b" 200 " not in head.split(b"\r\n", 1)[0]:
                    failed += 1
                writers.append(writer)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
                failed += 1

    await asyncio.gather(*(one() for _ in range(n)))
    return writers, failed
