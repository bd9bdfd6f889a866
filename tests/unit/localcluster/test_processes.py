from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from caldera.localcluster import processes, wait
from caldera.localcluster.processes import ProcessSpec

SLEEP = shutil.which("sleep") or "/bin/sleep"


def test_started_daemon_is_found_by_its_pid_file(tmp_path: Path) -> None:
    pid = processes.start(ProcessSpec("s", [SLEEP, "60"]), tmp_path / "run", tmp_path / "logs")
    try:
        assert processes.running_pid(tmp_path / "run", "s") == pid
    finally:
        processes.stop(tmp_path / "run", "s")


def test_stopped_daemon_is_gone(tmp_path: Path) -> None:
    pid = processes.start(ProcessSpec("s", [SLEEP, "60"]), tmp_path / "run", tmp_path / "logs")
    assert processes.stop(tmp_path / "run", "s", grace=2)
    assert processes.running_pid(tmp_path / "run", "s") is None and not processes._alive(pid)


def test_pid_file_of_another_program_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x.pid").write_text("1 /not/our/binary\n")
    assert processes.running_pid(tmp_path / "run", "x") is None


def test_digest_changes_with_an_input_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("a")
    spec = ProcessSpec("s", [SLEEP, "1"], inputs=(config,))
    before = spec.digest()
    config.write_text("b")
    assert spec.digest() != before


SH = shutil.which("sh") or "/bin/sh"


def _untracked(tmp_path: Path, *args: str) -> int:
    pid = processes.start(ProcessSpec("m", [SH, "-c", "sleep 60", *args]), tmp_path / "run", tmp_path / "logs")
    (tmp_path / "run" / "m.pid").unlink()
    return pid


def test_untracked_process_naming_a_path_in_the_directory_is_a_stray(tmp_path: Path) -> None:
    pid = _untracked(tmp_path, f"--data-dir={tmp_path}/etcd")
    try:
        assert pid in processes.find_strays(tmp_path, {SH}, set())
    finally:
        processes.kill_pids([pid], grace=2)


def test_untracked_process_of_another_directory_is_not_a_stray(tmp_path: Path) -> None:
    pid = _untracked(tmp_path, "--data-dir=/elsewhere/etcd")
    try:
        assert pid not in processes.find_strays(tmp_path, {SH}, set())
    finally:
        processes.kill_pids([pid], grace=2)


def test_terminated_child_ends_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([SLEEP, "60"])
    processes.terminate(proc, grace=10)
    assert proc.returncode == -signal.SIGTERM


def test_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, signal, threading; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); threading.Event().wait(60)")])
    wait.until(ready.exists, 10, "the child to ignore SIGTERM", 0.05)
    processes.terminate(proc, grace=0.5)
    assert proc.returncode == -signal.SIGKILL
