"""`caldera up --detach` (what `make up` runs) on its own cluster directory reaches a chat
completion through the router; `caldera down` then leaves no process and no listening port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# On a fresh machine `up` first builds the cluster binaries from their Go modules (tens of minutes).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
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
        if text in cmdline:
            found.append(f"{pid} {cmdline[:200]}")
    return found


def allocated_ports(directory: Path) -> set[int]:
    ports: set[int] = set()
    for name in ("ports.json", "walkthrough.json"):
        path = directory / name
        if path.is_file():
            data = json.loads(path.read_text())
            ports |= {v for v in data.get("ports", data).values() if isinstance(v, int)}
    return ports


@dataclass
class Walk:
    up: subprocess.CompletedProcess[str]
    down: subprocess.CompletedProcess[str]
    ports: set[int]
    leftover_ports: set[int]
    leftover_processes: list[str]


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    directory = tmp_path_factory.mktemp("caldera-up")
    caldera = [sys.executable, "-m", "caldera.cli"]
    up = subprocess.run([*caldera, "up", "--detach", "--dir", str(directory)], capture_output=True, text=True,
                        check=False, timeout=3300)
    ports = allocated_ports(directory)
    down = subprocess.run([*caldera, "down", "--dir", str(directory)], capture_output=True, text=True, check=False,
                          timeout=300)
    yield Walk(up, down, ports, listening_ports() & ports, processes_mentioning(str(directory)))


def test_up_prints_a_chat_completion_sent_through_the_router(walk: Walk) -> None:
    assert walk.up.returncode == 0, walk.up.stderr[-4000:]
    assert "first completion after" in walk.up.stderr


def test_up_says_what_each_step_does(walk: Walk) -> None:
    for step in ("Starting the local cluster", "Starting the controller", "and the router",
                 "Applying examples/quickstart/", "Sending a chat completion"):
        assert step in walk.up.stderr


def test_down_leaves_no_process_running(walk: Walk) -> None:
    assert walk.down.returncode == 0, walk.down.stderr
    assert not walk.leftover_processes


def test_down_leaves_no_listening_port(walk: Walk) -> None:
    assert walk.ports, "up allocated no ports: did it run?"
    assert not walk.leftover_ports
