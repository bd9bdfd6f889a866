"""Harness for tests and benchmarks: real enginesim processes on loopback, manifest builders.

Used by the router's end-to-end tests and `benchmarks/router.py`; nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from router.server import Router


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@dataclass
class EngineProc:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    kv_port: int | None = None
    replay_port: int | None = None
    bootstrap_port: int | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def endpoint(self) -> dict[str, Any]:
        ep: dict[str, Any] = {"name": self.name, "address": self.address, "labels": self.labels}
        if self.kv_port:
            ep["kvEvents"] = f"tcp://127.0.0.1:{self.kv_port}"
        if self.replay_port:
            ep["kvReplay"] = f"tcp://127.0.0.1:{self.replay_port}"
        if self.bootstrap_port:
            ep["bootstrapPort"] = self.bootstrap_port
        return ep


class Engines:
    """Starts enginesim processes on loopback and stops them at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[EngineProc] = []

    async def start(self, name: str, *args: str, labels: dict[str, str] | None = None, kv_events: bool = False,
                    bootstrap: bool = False, time_scale: float = 20.0, model: str = "base-model") -> EngineProc:
        port = free_port()
        cmd = [sys.executable, "-m", "enginesim", "--host", "127.0.0.1", "--port", str(port),
               "--model", model, "--time-scale", str(time_scale), *args]
        kv_port = replay_port = boot_port = None
        if kv_events:
            kv_port, replay_port = free_port(), free_port()
            cmd += ["--kv-events-config", json.dumps({
                "enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{kv_port}",
                "replay_endpoint": f"tcp://*:{replay_port}", "topic": f"kv@{name}@{model}"})]
        if bootstrap:
            boot_port = free_port()
            cmd += ["--disaggregation-bootstrap-port", str(boot_port)]
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        ep = EngineProc(name=name, port=port, proc=proc, log=log, kv_port=kv_port, replay_port=replay_port,
                        bootstrap_port=boot_port, labels=labels or {})
        self.procs.append(ep)
        await self._wait_healthy(ep)
        return ep

    async def _wait_healthy(self, ep: EngineProc) -> None:
        async with aiohttp.ClientSession() as s:
            async def healthy() -> bool:
                if ep.proc.poll() is not None:
                    raise AssertionError(f"enginesim {ep.name} exited: {ep.log.read_text()[-2000:]}")
                try:
                    async with s.get(f"{ep.url}/health", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        return r.status == 200
                except (aiohttp.ClientError, TimeoutError, OSError):
                    return False

            await wait_until(healthy, timeout=30)

    def stop(self) -> None:
        for ep in self.procs:
            if ep.proc.poll() is None:
                ep.proc.terminate()
        for ep in self.procs:
            try:
                ep.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                ep.proc.kill()
                ep.proc.wait()


@dataclass
class RunningRouter:
    router: Router
    url: str
    session: aiohttp.ClientSession

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.session.post(self.url + path, data=data,
                                       headers={"content-type": "application/json", **(headers or {})})

    async def complete(self, body: dict[str, Any], headers: dict[str, str] | None = None
                       ) -> tuple[int, dict[str, Any], dict[str, str]]:
        async with await self.post("/v1/completions", body, headers) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)


def server(name: str, model: str | None = None, engine: str = "vLLM", labels: dict[str, str] | None = None,
           **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"model": model, "inferenceEngine": engine,
                     "workloadSelector": {"matchLabels": labels or {"app": name}, **spec.pop("selector", {})},
                     "workloadPort": {"port": 8000}, **spec}}


def route(name: str, model: str, rules: list[dict[str, Any]], loras: list[str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"modelName": model, "loraAdapters": loras or [], "rules": rules}}


