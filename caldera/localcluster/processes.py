"""Start, find and stop the cluster's daemons by pid file.

Each daemon runs in its own session (process group), logs to `<dir>/logs/<name>.log` and
records `<pid> <executable>` in `<dir>/run/<name>.pid`. A pid counts as ours only while
`/proc/<pid>/cmdline` still starts with the recorded executable, so a recycled pid is never
signalled. Stopping signals the daemon's whole process group (its children go with it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Files whose content the process depends on (configs, its own code): a change means restart.
    inputs: tuple[Path, ...] = ()

    def digest(self) -> str:
        h = hashlib.sha256("\0".join(self.argv).encode())
        for path in self.inputs:
            h.update(path.read_bytes() if path.exists() else b"")
        return h.hexdigest()[:16]


def _pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name; Z and X are dead.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def running_pid(run_dir: Path, name: str) -> int | None:
    """The pid of the named daemon if it is running and is still the process we started."""
    path = _pid_file(run_dir, name)
    try:
        pid_text, exe = path.read_text().splitlines()[0].split(" ", 1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    cmdline = _cmdline(pid)
    if not cmdline or cmdline[0] != exe.strip() or not _alive(pid):
        return None
    return pid


def recorded_digest(run_dir: Path, name: str) -> str:
    """The digest of the spec the named daemon was started from ("" if unknown)."""
    try:
        lines = _pid_file(run_dir, name).read_text().splitlines()
    except OSError:
        return ""
    return lines[1].strip() if len(lines) > 1 else ""


def start(spec: ProcessSpec, run_dir: Path, log_dir: Path) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with (log_dir / f"{spec.name}.log").open("ab") as out:
        proc = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    _pid_file(run_dir, spec.name).write_text(f"{proc.pid} {spec.argv[0]}\n{spec.digest()}\n")
    # Popen returns once the exec has begun, but the kernel fills in the new command line a
    # moment later; until then /proc/<pid>/cmdline is empty and the pid would not look ours.
    deadline = time.monotonic() + 5.0
    while not _cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.pid


def wait_gone(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def stop(run_dir: Path, name: str, grace: float = 10.0) -> bool:
    """Stop the named daemon and its process group; True if something was running."""
    pid = running_pid(run_dir, name)
    _pid_file(run_dir, name).unlink(missing_ok=True)
    if pid is None:
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        if wait_gone(pid, time.monotonic() + wait):
            break
    # Members of the group that outlived the leader (e.g. children of the runner).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def terminate(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """End a child we started: SIGTERM, then SIGKILL if it is still running after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_bytes(pid: int) -> int:
    """Resident memory of one process, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def group_pids(pgid: int) -> list[int]:
    """Every live process in a process group (a daemon and the processes it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def find_strays(directory: Path, executables: set[str], tracked: set[int]) -> list[int]:
    """Live processes of ours for this cluster directory that no pid file tracks (left over by
    a crash or a race): argv[0] is one of our executables (or the runner module) and an argument
    names a path inside the directory."""
    prefix = f"{directory}/"
    strays = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in tracked or int(entry.name) == os.getpid():
            continue
        argv = _cmdline(int(entry.name))
        if not argv:
            continue
        ours = argv[0] in executables or "caldera.localcluster.runner" in argv
        if ours and any(prefix in arg or arg.endswith(f"={directory}") for arg in argv[1:]) \
                and _alive(int(entry.name)):
            strays.append(int(entry.name))
    return strays


def kill_pids(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds; a process-group leader
    (each daemon is one) takes its group with it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
        deadline = time.monotonic() + grace
        pids = [p for p in pids if not wait_gone(p, deadline)]
        if not pids:
            return
