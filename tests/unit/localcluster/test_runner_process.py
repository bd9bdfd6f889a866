"""The runner with real processes (no cluster): start, readiness, stop."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from caldera.localcluster import wait
from caldera.localcluster.runner import Runner, restart_backoff

HOST = "127.1.250.7"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _pod(port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": {"containers": [{"name": "c", "image": "caldera/process",
                                 "command": [sys.executable, "-m", "http.server", "--bind", "$(POD_IP)", str(port)],
                                 "ports": [{"containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": HOST,
                   "conditions": [{"type": "Ready", "status": "False"}]},
    }


def test_pod_is_reported_ready_once_its_process_listens(tmp_path: Path) -> None:
    reports: list[tuple[str, str, bool]] = []
    runner = Runner(tmp_path, set_ready=lambda ns, name, ready, containers: reports.append((ns, name, ready)))
    port = _free_port()
    runner.observe(_pod(port))
    try:
        wait.until(lambda: runner.reconcile() or reports, 30, "a readiness report")
        with socket.create_connection((HOST, port), timeout=1):
            pass
        assert reports == [("ns", "web", True)]
    finally:
        runner.stop_all()


def test_deleted_pod_loses_its_process(tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    pod = _pod(_free_port())
    runner.observe(pod)
    runner.reconcile()
    [(_, proc)] = runner.procs.values()
    runner.observe(pod, deleted=True)
    runner.reconcile()
    assert proc.poll() is not None and runner.procs == {}


def test_exited_process_is_restarted(tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    pod = _pod(_free_port())
    pod["spec"]["containers"][0]["command"] = [sys.executable, "-c", "pass"]
    runner.observe(pod)
    runner.reconcile()
    [(_, first)] = runner.procs.values()
    try:
        wait.until(lambda: runner.reconcile() or runner.restarts.get("uid-1_c", 0) >= 2, 30, "two restarts")
        [(_, latest)] = runner.procs.values()
        assert latest.pid != first.pid
    finally:
        runner.stop_all()


def test_restart_backoff_doubles_up_to_thirty_seconds() -> None:
    assert [restart_backoff(n) for n in (1, 2, 3, 6, 7)] == [1.0, 2.0, 4.0, 30.0, 30.0]
