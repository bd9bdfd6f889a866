"""Benchmark of the local cluster: warm `cluster up` time to healthy and the memory (RSS)
of the running cluster, printed as JSON.

    .venv/bin/python benchmarks/cluster.py [--topology small] [--dir DIR] [--keep] [--cold-build]

Binaries are built first if missing (that time is reported separately as `build_seconds`,
0 when cached). `--cold-build` first builds every component into an empty binary cache with
an empty Go build cache (GOCACHE; downloaded modules are kept) and reports the seconds per
component: the compile cost of a fresh machine. It takes tens of minutes on 2 cores. The cluster is started in its own directory (default: a fresh one under
~/.cache/caldera/bench-cluster), measured, and stopped unless --keep.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import click

from caldera.localcluster import build
from caldera.localcluster.cluster import Cluster


@click.command()
@click.option("--topology", default="small", show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path.home() / ".cache" / "caldera" / "bench-cluster", show_default=True)
@click.option("--keep", is_flag=True, help="Leave the cluster running.")
@click.option("--cold-build", is_flag=True, help="Also time a build from empty binary and Go build caches.")
def main(topology: str, directory: Path, keep: bool, cold_build: bool) -> None:
    cold: dict[str, float] = {}
    if cold_build:
        with tempfile.TemporaryDirectory(prefix="caldera-cold-") as tmp:
            saved = {k: os.environ.get(k) for k in ("CALDERA_CACHE", "GOCACHE")}
            os.environ["CALDERA_CACHE"] = f"{tmp}/cache"
            os.environ["GOCACHE"] = f"{tmp}/gocache"
            try:
                cold = build.build_all(lambda m: None)
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
    build_start = time.monotonic()
    built = build.build_all(lambda m: None)
    build_seconds = time.monotonic() - build_start if any(built.values()) else 0.0
    cluster = Cluster(directory)
    cluster.down(lambda m: None)
    shutil.rmtree(directory, ignore_errors=True)
    start = time.monotonic()
    cluster.up(topology, progress=lambda m: None)
    up_seconds = time.monotonic() - start
    # Let the components settle (informers synced, first scrapes) before reading memory.
    settle_until = time.monotonic() + 15
    while time.monotonic() < settle_until:
        time.sleep(1)
    rss = cluster.rss_bytes()
    restart_start = time.monotonic()
    cluster.up(topology, progress=lambda m: None)
    reuse_seconds = time.monotonic() - restart_start
    if not keep:
        cluster.down(lambda m: None)
    print(json.dumps({
        "topology": topology,
        **({"cold_build_seconds": {k: round(v, 1) for k, v in cold.items()},
            "cold_build_total_seconds": round(sum(cold.values()), 1)} if cold_build else {}),
        "build_seconds": round(build_seconds, 1),
        "warm_up_seconds": round(up_seconds, 1),
        "up_when_already_running_seconds": round(reuse_seconds, 2),
        "rss_mib": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "rss_total_mib": round(sum(rss.values()) / 2**20, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
