"""Time from `caldera up` to the first chat completion, and what `caldera down` leaves behind.

    .venv/bin/python benchmarks/up.py [--dir DIR] [--topology small]

Runs `caldera up --detach` in its own cluster directory (a fresh temporary one by default, so
it never touches a running cluster), then `caldera down`, and prints one JSON object:
seconds to the first completion, whether the cluster binaries were already cached (warm) or
had to be built (cold), and the processes and listening TCP ports left after `down` (both
must be empty).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from caldera.localcluster import build


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(f"{pid} {cmdline.strip()[:160]}")
    return found


def cluster_ports(directory: Path) -> set[int]:
    """Every port `up` allocated in the directory (cluster components, controller, router)."""
    ports: set[int] = set()
    for name in ("ports.json", "walkthrough.json"):
        path = directory / name
        if path.is_file():
            data = json.loads(path.read_text())
            ports |= {int(v) for v in (data.get("ports", data)).values() if isinstance(v, int)}
    return ports


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--topology", default="small")
    args = parser.parse_args()
    directory = (args.dir or Path(tempfile.mkdtemp(prefix="caldera-up-bench-"))).resolve()
    warm = not build.missing_components()
    before = listening_ports()
    caldera = [sys.executable, "-m", "caldera.cli"]
    started = time.monotonic()
    up = subprocess.run([*caldera, "up", "--detach", "--topology", args.topology, "--dir", str(directory)],
                        capture_output=True, text=True, check=False)
    to_first_completion = time.monotonic() - started
    ours = cluster_ports(directory)
    down = subprocess.run([*caldera, "down", "--dir", str(directory)], capture_output=True, text=True, check=False)
    # Only this directory's ports: other processes on the machine may open ports meanwhile.
    leftover_ports = sorted((listening_ports() - before) & ours)
    leftover_processes = processes_mentioning(str(directory))
    print(json.dumps({
        "benchmark": "caldera up -> first completion",
        "topology": args.topology,
        "binaries": "warm (cached)" if warm else "cold (built)",
        "up_exit_code": up.returncode,
        "seconds_to_first_completion": round(to_first_completion, 1) if up.returncode == 0 else None,
        "down_exit_code": down.returncode,
        "leftover_listening_ports": leftover_ports,
        "leftover_processes": leftover_processes,
        "up_output_tail": up.stderr.splitlines()[-15:] if up.returncode else [],
    }, indent=2))
    return 0 if up.returncode == 0 and down.returncode == 0 and not leftover_ports and not leftover_processes else 1


if __name__ == "__main__":
    sys.exit(main())
