"""Sharing one local cluster between test sessions (used by the `local_cluster` fixture).

Every session holds a shared lock on `<dir>/sessions.lock` while it uses the cluster. The
first one in starts the cluster (under the directory's exclusive lock, `Cluster.lock`) unless a healthy
one already runs there, and marks it as started by tests. At the end the last session out
stops it, but only if tests started it: a cluster you started with `caldera cluster up`
is never stopped by the tests. `CALDERA_KEEP_CLUSTER=1` keeps it running regardless.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kubernetes import client, config

from caldera.localcluster.cluster import Cluster, Progress

DEFAULT_TEST_DIR = Path(os.environ.get("CALDERA_TEST_CLUSTER_DIR",
                                       Path.home() / ".cache" / "caldera" / "test-cluster"))
STARTED_BY_TESTS = "started-by-tests"


@dataclass
class LocalCluster:
    """What tests get: the cluster's directory, kubeconfig, URLs, and helpers."""

    dir: Path
    kubeconfig: Path
    prometheus_url: str
    server: str
    topology: str
    cluster: Cluster
    started: bool = False
    _session_lock: IO[str] | None = field(default=None, repr=False)

    @property
    def pod_network(self) -> str:
        """The cluster's loopback pod network, e.g. "127.1.0.0/16"."""
        return str(self.cluster.pod_network)

    def api_client(self) -> client.ApiClient:
        """A fresh kubernetes ApiClient for this cluster (does not touch the global config)."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def pod_log(self, namespace: str, pod: str, container: str) -> Path:
        """Where the process runner writes a process-backed container's output."""
        return self.dir / "logs" / "pods" / f"{namespace}_{pod}_{container}.log"

    def pod_pid_file(self, pod_uid: str, container: str) -> Path:
        return self.dir / "run" / "pods" / f"{pod_uid}_{container}.pid"


def acquire(directory: Path = DEFAULT_TEST_DIR, topology: str = "small",
            progress: Progress = print) -> LocalCluster:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    session_lock = (directory / "sessions.lock").open("a")
    fcntl.flock(session_lock, fcntl.LOCK_SH)
    cluster = Cluster(directory)
    started = False
    with cluster.lock():
        if not cluster.healthy():
            running = cluster.state().get("topology")
            if running and running != topology:
                cluster.down(progress)
            cluster.up(topology, progress)
            (directory / STARTED_BY_TESTS).touch()
            started = True
        else:
            # Cheap on a healthy cluster; picks up changed CRDs in crds/ and restarts a
            # daemon whose configuration or code changed.
            cluster.up(topology, progress)
    return LocalCluster(dir=directory, kubeconfig=cluster.kubeconfig, prometheus_url=cluster.prometheus_url,
                        server=cluster.server, topology=str(cluster.state().get("topology")), cluster=cluster,
                        started=started, _session_lock=session_lock)


def release(local: LocalCluster, progress: Progress = print) -> bool:
    """Drop this session's hold; stop the cluster if this was the last session and tests started it."""
    lock = local._session_lock
    if lock is None:
        return False
    fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return False  # another session still uses it
    try:
        marker = local.dir / STARTED_BY_TESTS
        if marker.exists() and os.environ.get("CALDERA_KEEP_CLUSTER") != "1":
            local.cluster.down(progress)
            marker.unlink(missing_ok=True)
            return True
        return False
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


@contextmanager
def private(directory: Path, topology: str = "small", label: str = "private_cluster") -> Iterator[LocalCluster]:
    """A cluster of the caller's own in `directory`, up for the `with` block and down after it:
    for tests whose pods must not share capacity (or cluster-wide webhooks) with others."""
    cluster = Cluster(directory)

    def progress(message: str) -> None:
        print(f"[{label}] {message}", flush=True)

    try:
        cluster.up(topology, progress)
        yield LocalCluster(dir=cluster.dir, kubeconfig=cluster.kubeconfig, prometheus_url=cluster.prometheus_url,
                           server=cluster.server, topology=topology, cluster=cluster, started=True)
    finally:
        cluster.down(progress)
