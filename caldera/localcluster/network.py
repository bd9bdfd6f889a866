"""Loopback pod networks, one /16 per running cluster: 127.<n>.0.0/16, n = 1, 2, ...

Every pod IP is a loopback address this machine can bind. Two clusters running at once
(the shared test cluster, a private one, `caldera up`) must not hand out the same pod IP, or
two engine processes would fight over one address and port. A machine-wide registry
(`<cache>/pod-networks.json`, under a file lock) maps each n to the cluster directory that
holds it; a directory keeps its n across `up`/`down`, and an n whose owner is not running
may be taken over. The first cluster on a machine gets 127.1.0.0/16.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path

from caldera.localcluster.build import cache_root

FIRST, LAST = 1, 254


def _network(n: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"127.{n}.0.0/16")


def allocate(directory: Path, is_running: Callable[[Path], bool]) -> ipaddress.IPv4Network:
    """The pod network of a cluster directory: its saved one if no other running cluster holds
    it, else the lowest free one. Saved in `<dir>/network.json`."""
    directory = directory.resolve()
    saved_file = directory / "network.json"
    saved: int | None = None
    if saved_file.exists():
        saved = int(json.loads(saved_file.read_text())["octet"])
    registry_file = cache_root() / "pod-networks.json"
    registry_file.parent.mkdir(parents=True, exist_ok=True)
    with (cache_root() / "pod-networks.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry: dict[str, str] = json.loads(registry_file.read_text()) if registry_file.exists() else {}

        def free(n: int) -> bool:
            owner = registry.get(str(n))
            return owner is None or owner == str(directory) or not is_running(Path(owner))

        candidates = ([saved] if saved is not None else []) + list(range(FIRST, LAST + 1))
        chosen = next((n for n in candidates if free(n)), None)
        if chosen is None:
            raise RuntimeError(f"all loopback pod networks 127.{FIRST}-{LAST}.0.0/16 are held by running clusters")
        for key in [k for k, v in registry.items() if v == str(directory) and k != str(chosen)]:
            del registry[key]
        registry[str(chosen)] = str(directory)
        registry_file.write_text(json.dumps(registry, indent=1, sort_keys=True))
    directory.mkdir(parents=True, exist_ok=True)
    saved_file.write_text(json.dumps({"octet": chosen, "podNetwork": str(_network(chosen))}))
    return _network(chosen)


def saved(directory: Path) -> ipaddress.IPv4Network | None:
    path = directory / "network.json"
    if not path.exists():
        return None
    return _network(int(json.loads(path.read_text())["octet"]))
