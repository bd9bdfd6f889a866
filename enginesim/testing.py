"""Start real enginesim processes for tests and benchmarks (ours and other areas').

    sim = launch_sim(tmp_path, "--model", "m", "--time-scale", "20")
    ...  # talk to sim.url
    sim.stop()   # SIGTERM, graceful
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, interval: float = 0.02) -> None:
    """Poll ``condition`` until it holds; raise AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@dataclass
class SimProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 15.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"enginesim exited with {self.proc.returncode}:\n{self.log()}")
            return self.healthy()

        wait_until(up, timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (graceful drain), then SIGKILL if it does not exit in time; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def launch_sim(log_dir: Path, *args: str, host: str = "127.0.0.1", port: int | None = None,
               wait_healthy: bool = True, env: dict[str, str] | None = None) -> SimProcess:
    """Start ``python -m enginesim ARGS --host HOST --port PORT`` and (by default) wait for /health."""
    port = port or free_port(host)
    log_path = Path(log_dir) / f"enginesim-{host}-{port}.log"
    argv = [sys.executable, "-m", "enginesim", *args, "--host", host, "--port", str(port)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    sim = SimProcess(proc, host, port, log_path)
    if wait_healthy:
        try:
            sim.wait_healthy()
        except AssertionError:
            sim.stop()
            raise
    return sim
