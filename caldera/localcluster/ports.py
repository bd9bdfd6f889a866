"""Loopback ports per cluster directory.

A directory hashes to a block of ports between 20000 and the start of the kernel's
ephemeral range (32768), so two clusters in different directories (and anything on the
usual default ports) do not clash. Ephemeral ports are avoided: an outgoing connection's
TIME_WAIT on such a port makes a later bind to it fail ("address already in use"). The
block is saved in the directory, so the ports stay the same across `up`/`down`; a block
with a busy port is skipped at the first `up`.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

from pydantic import BaseModel

BLOCK = 16
LOW = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


HIGH = max(LOW + 64 * BLOCK, min(_ephemeral_low(), 32768))


class Ports(BaseModel):
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    vc_scheduler_metrics: int
    vc_scheduler_healthz: int
    vc_controller_metrics: int
    vc_controller_healthz: int
    kwok: int
    prometheus: int
    runner: int

    def all(self) -> list[int]:
        return list(self.model_dump().values())


NAMES = list(Ports.model_fields)


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def block_for(directory: Path, attempt: int = 0) -> Ports:
    digest = hashlib.sha256(f"{directory.resolve()}#{attempt}".encode()).digest()
    blocks = (HIGH - LOW) // BLOCK
    base = LOW + int.from_bytes(digest[:4], "big") % blocks * BLOCK
    return Ports(**{name: base + i for i, name in enumerate(NAMES)})


def allocate(directory: Path, running: bool = False) -> Ports:
    """The saved ports of a cluster directory, or a new free block (saved). Saved ports in
    the ephemeral range (from older versions) are replaced unless the cluster is running."""
    path = directory / "ports.json"
    if path.exists():
        saved = Ports.model_validate(json.loads(path.read_text()))
        if running or all(LOW <= p < HIGH for p in saved.all()):
            return saved
    for attempt in range(64):
        ports = block_for(directory, attempt)
        if all(_free(p) for p in ports.all()):
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(ports.model_dump_json(indent=2))
            return ports
    raise RuntimeError(f"no free block of {BLOCK} loopback ports found for {directory}")
