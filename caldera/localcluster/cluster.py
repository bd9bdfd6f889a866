"""Bring the local cluster up, check it, and take it down.

`up` is idempotent: components already running in the directory are kept, missing ones are
started, and it returns once every component is healthy. `down` stops everything `up`
started in that directory and leaves nothing running.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from caldera.localcluster import build, kubeconfig, network, pki, ports, processes, prometheus, topology
from caldera.localcluster.processes import ProcessSpec

log = logging.getLogger(__name__)
# Health polling would log every request at INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)

Progress = Callable[[str], None]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy" / "local"
CRDS_DIR = REPO_ROOT / "crds"
DEFAULT_DIR = Path(os.environ.get("CALDERA_CLUSTER_DIR", Path.home() / ".cache" / "caldera" / "cluster"))
# ClusterIPs are loopback too: nothing serves them (no kube-proxy), and a client that tries
# one must not send packets off this machine.
SERVICE_CIDR = os.environ.get("CALDERA_SERVICE_CIDR", "127.254.0.0/16")
SERVICE_IP = str(next(ipaddress.IPv4Network(SERVICE_CIDR).hosts()))
RUNNER_CODE = tuple(Path(__file__).with_name(n) for n in ("runner.py", "scrape.py"))
# There is no kube-scheduler: Volcano also takes pods that name no scheduler.
SCHEDULER_NAMES = ("--scheduler-name=volcano", "--scheduler-name=default-scheduler")
# Start order; `down` stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "vc-controller-manager", "vc-scheduler",
              "kwok", "runner", "prometheus")


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layout:
    """Where everything of one cluster lives."""

    dir: Path

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def state(self) -> Path:
        return self.dir / "cluster.json"

    @property
    def pki(self) -> pki.Pki:
        return pki.Pki(self.dir / "pki")

    @property
    def config(self) -> Path:
        return self.dir / "config"


def _wait(what: str, check: Callable[[], bool], timeout: float, layout: Layout, component: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if component and processes.running_pid(layout.run, component) is None:
            raise ClusterError(f"{component} exited while waiting for {what}; last log lines:\n"
                               f"{_tail(layout.logs / f'{component}.log')}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}"
                       + (f"; last log lines of {component}:\n{_tail(layout.logs / f'{component}.log')}"
                          if component else ""))


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_ok(url: str, **kwargs: Any) -> bool:
    return httpx.get(url, timeout=2.0, **kwargs).status_code == 200


class Cluster:
    """One local cluster, identified by its directory."""

    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        self.layout = Layout(directory.resolve())
        self._ports: ports.Ports | None = None
        self._ssl: ssl.SSLContext | None = None
        self._lock_depth = 0
        self._lock_file: IO[str] | None = None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive hold on the directory (re-entrant in this object), so concurrent
        `up`/`down` calls from the CLI and test sessions take turns."""
        if self._lock_depth == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = (self.dir / "start.lock").open("a")
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_file is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
                self._lock_file = None

    @property
    def dir(self) -> Path:
        return self.layout.dir

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def ports(self) -> ports.Ports:
        if self._ports is None:
            running = any(processes.running_pid(self.layout.run, name) for name in COMPONENTS)
            self._ports = ports.allocate(self.dir, running=running)
        return self._ports

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def pod_network(self) -> ipaddress.IPv4Network:
        """This cluster's loopback pod network (allocated at `up`; see `network`)."""
        return network.saved(self.dir) or topology.POD_NETWORK

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.layout.state.read_text()))
        except (OSError, ValueError):
            return {}

    # ---- health ---------------------------------------------------------------------------------

    def _api(self, path: str) -> httpx.Response:
        if self._ssl is None:
            p = self.layout.pki
            self._ssl = ssl.create_default_context(cafile=str(p.ca_cert))
            self._ssl.load_cert_chain(str(p.admin_cert), str(p.admin_key))
        return httpx.get(self.server + path, timeout=3.0, verify=self._ssl)

    def _checks(self) -> dict[str, Callable[[], bool]]:
        pt = self.ports
        return {
            "etcd": lambda: _http_ok(f"http://127.0.0.1:{pt.etcd}/health"),
            "kube-apiserver": lambda: self._api("/readyz").status_code == 200,
            "kube-controller-manager": lambda: _http_ok(f"https://127.0.0.1:{pt.controller_manager}/healthz",
                                                        verify=False),
            "vc-controller-manager": lambda: _http_ok(f"http://127.0.0.1:{pt.vc_controller_healthz}/healthz"),
            "vc-scheduler": lambda: _http_ok(f"http://127.0.0.1:{pt.vc_scheduler_healthz}/healthz"),
            "kwok": lambda: _http_ok(f"http://127.0.0.1:{pt.kwok}/healthz"),
            "runner": lambda: _http_ok(f"http://127.0.0.1:{pt.runner}/metrics"),
            "prometheus": lambda: _http_ok(f"{self.prometheus_url}/-/ready"),
        }

    def status(self) -> dict[str, dict[str, Any]]:
        """Per component: pid (or None), healthy, and the endpoint it serves."""
        out: dict[str, dict[str, Any]] = {}
        if not (self.dir / "ports.json").exists():
            return {name: {"pid": None, "healthy": False} for name in COMPONENTS}
        for name, check in self._checks().items():
            pid = processes.running_pid(self.layout.run, name)
            healthy = False
            if pid is not None:
                try:
                    healthy = check()
                except (httpx.HTTPError, OSError):
                    healthy = False
            out[name] = {"pid": pid, "healthy": healthy}
        return out

    def healthy(self) -> bool:
        return bool(self.state().get("ready")) and all(s["healthy"] for s in self.status().values())

    # ---- up -------------------------------------------------------------------------------------

    def _specs(self) -> dict[str, ProcessSpec]:
        pt, lay, p = self.ports, self.layout, self.layout.pki
        kc = str(lay.kubeconfig)
        etcd_url = f"http://127.0.0.1:{pt.etcd}"
        peer_url = f"http://127.0.0.1:{pt.etcd_peer}"
        return {
            "etcd": ProcessSpec("etcd", [
                str(build.binary("etcd")), "--name=caldera", f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=caldera={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
                "--quota-backend-bytes=8589934592"]),
            "kube-apiserver": ProcessSpec("kube-apiserver", [
                str(build.binary("kube-apiserver")), f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={pt.apiserver}",
                f"--cert-dir={self.dir / 'pki' / 'generated'}",
                f"--tls-cert-file={p.serving_cert}", f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_pub}", f"--service-account-signing-key-file={p.sa_key}",
                "--authorization-mode=RBAC", "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The advertise address is loopback, which Endpoints objects may not hold.
                "--endpoint-reconciler-type=none",
                # Pods need no service-account token (nothing runs in them), and without this
                # plugin a pod created right after its namespace cannot race the SA controller.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false", "--v=0"]),
            "kube-controller-manager": ProcessSpec("kube-controller-manager", [
                str(build.binary("kube-controller-manager")), f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1", f"--secure-port={pt.controller_manager}", "--leader-elect=false",
                f"--service-account-private-key-file={p.sa_key}", f"--root-ca-file={p.ca_cert}",
                f"--cluster-signing-cert-file={p.ca_cert}", f"--cluster-signing-key-file={p.ca_key}",
                "--use-service-account-credentials=false", f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cert-dir={self.dir / 'pki' / 'kcm'}", "--profiling=false", "--v=0"]),
            "vc-controller-manager": ProcessSpec("vc-controller-manager", [
                str(build.binary("vc-controller-manager")), f"--kubeconfig={kc}", "--leader-elect=false",
                "--enable-healthz=true", f"--healthz-address=127.0.0.1:{pt.vc_controller_healthz}",
                "--enable-metrics=true", f"--listen-address=127.0.0.1:{pt.vc_controller_metrics}",
                *SCHEDULER_NAMES, "--logtostderr=true", "--v=2"]),
            "vc-scheduler": ProcessSpec("vc-scheduler", inputs=(DEPLOY_DIR / "volcano-scheduler.yaml",), argv=[
                str(build.binary("vc-scheduler")), f"--kubeconfig={kc}", "--leader-elect=false",
                f"--scheduler-conf={DEPLOY_DIR / 'volcano-scheduler.yaml'}", *SCHEDULER_NAMES,
                "--enable-healthz=true", f"--healthz-address=127.0.0.1:{pt.vc_scheduler_healthz}",
                "--enable-metrics=true", f"--listen-address=127.0.0.1:{pt.vc_scheduler_metrics}",
                "--cache-dumper=false", "--schedule-period=500ms", "--logtostderr=true", "--v=3"]),
            "kwok": ProcessSpec("kwok", inputs=(DEPLOY_DIR / "kwok-stages.yaml",), argv=[
                str(build.binary("kwok")), f"--kubeconfig={kc}", f"--config={DEPLOY_DIR / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={topology.KWOK_NODE_ANNOTATION}=fake",
                f"--cidr={self.pod_network}", "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{pt.kwok}"]),
            "runner": ProcessSpec("runner", inputs=RUNNER_CODE, argv=[
                sys.executable, "-m", "caldera.localcluster.runner", f"--kubeconfig={kc}", f"--dir={self.dir}",
                f"--port={pt.runner}"]),
            "prometheus": ProcessSpec("prometheus", inputs=(lay.config / "prometheus.yaml",), argv=prometheus.argv(
                prometheus.binary(), lay.config / "prometheus.yaml", self.dir / "prometheus", pt.prometheus)),
        }

    def _start(self, name: str, spec: ProcessSpec, progress: Progress, timeout: float = 120.0) -> None:
        check = self._checks()[name]
        recorded = processes.recorded_digest(self.layout.run, name)
        # Only config-driven daemons restart by themselves; the control plane restarts on down/up.
        changed = bool(spec.inputs) and (recorded != spec.digest() if recorded else True)
        if processes.running_pid(self.layout.run, name) is not None and changed:
            progress(f"{name}: configuration or code changed; restarting")
            processes.stop(self.layout.run, name)
        if processes.running_pid(self.layout.run, name) is None:
            processes.start(spec, self.layout.run, self.layout.logs)
            progress(f"{name}: started (log: {self.layout.logs / (name + '.log')})")
        _wait(f"{name} to be healthy", check, timeout, self.layout, component=name)
        progress(f"{name}: healthy")

    def up(self, topology_ref: str | Path = "small", progress: Progress = log.info) -> None:
        """Build (cached), start every component, create the topology; return when healthy."""
        with self.lock():
            self._up(topology_ref, progress)

    def _up(self, topology_ref: str | Path, progress: Progress) -> None:
        start = time.monotonic()
        spec = topology.load(topology_ref)
        previous = self.state().get("topology")
        if previous and previous != spec.name and processes.running_pid(self.layout.run, "kube-apiserver"):
            raise ClusterError(f"{self.dir} runs topology {previous!r}; run `caldera cluster down --dir {self.dir}` "
                               f"before starting {spec.name!r} there")
        build.build_all(progress)
        prometheus.ensure_installed(progress)
        self._kill_strays(progress)
        for d in (self.layout.run, self.layout.logs, self.layout.config):
            d.mkdir(parents=True, exist_ok=True)
        self.layout.state.write_text(json.dumps({"topology": spec.name, "ready": False, "ports": self.ports.model_dump()}))
        pod_network = network.allocate(
            self.dir, lambda d: processes.running_pid(d / "run", "kube-apiserver") is not None)
        progress(f"pod network: {pod_network}")
        p = pki.ensure(self.dir / "pki", SERVICE_IP)
        kubeconfig.write(self.layout.kubeconfig, p, self.server)
        (self.layout.config / "prometheus.yaml").write_text(
            prometheus.render(self.layout.run / "scrape-targets.json",
                              f"127.0.0.1:{self.ports.vc_scheduler_metrics}"))
        specs = self._specs()
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            self._start(name, specs[name], progress)
        from caldera.localcluster import resources

        client = resources.Client(self.layout.kubeconfig)
        crd_files = resources.volcano_crd_files()
        crd_files += sorted(CRDS_DIR.glob("*.yaml")) if CRDS_DIR.is_dir() else []
        names = client.apply_files(crd_files)
        client.wait_crds_established(names, timeout=60)
        progress(f"CRDs: {len(names)} applied and established (Volcano + {CRDS_DIR})")
        for name in ("vc-controller-manager", "vc-scheduler", "kwok"):
            self._start(name, specs[name], progress)
        nodes, hypernodes = topology.render(spec, pod_network)
        client.create_nodes(nodes)
        client.apply_hypernodes(hypernodes)
        progress(f"topology {spec.name}: {len(nodes)} nodes, {len(hypernodes)} HyperNodes")
        _wait(f"{len(nodes)} nodes Ready", lambda: client.ready_nodes() >= len(nodes), 120, self.layout, "kwok")
        _wait("queue `default` Open", lambda: client.queue_state("default") == "Open", 120, self.layout,
              "vc-controller-manager")
        for name in ("runner", "prometheus"):
            self._start(name, specs[name], progress)
        self.layout.state.write_text(json.dumps({"topology": spec.name, "ready": True, "ports": self.ports.model_dump()}))
        progress(f"cluster healthy in {time.monotonic() - start:.1f}s; kubeconfig: {self.layout.kubeconfig}")

    # ---- down -----------------------------------------------------------------------------------

    def down(self, progress: Progress = log.info, wipe: bool = True) -> list[str]:
        """Stop every component (reverse start order); wipe etcd and Prometheus data unless told not to."""
        with self.lock():
            return self._down(progress, wipe)

    def _strays(self) -> list[int]:
        executables = {str(build.binary(b)) for c in build.COMPONENTS for b in c.binaries}
        with contextlib.suppress(prometheus.PrometheusError):
            executables.add(prometheus.binary())
        tracked = {pid for name in COMPONENTS if (pid := processes.running_pid(self.layout.run, name))}
        return processes.find_strays(self.dir, executables, tracked)

    def _kill_strays(self, progress: Progress) -> None:
        strays = self._strays()
        if strays:
            progress(f"stopping {len(strays)} untracked leftover process(es) of {self.dir}: {strays}")
            processes.kill_pids(strays)

    def _down(self, progress: Progress, wipe: bool) -> list[str]:
        stopped = [name for name in reversed(COMPONENTS) if processes.stop(self.layout.run, name)]
        for name in stopped:
            progress(f"{name}: stopped")
        self._kill_strays(progress)
        if wipe:
            import shutil

            for sub in ("etcd", "prometheus"):
                shutil.rmtree(self.dir / sub, ignore_errors=True)
            self.layout.state.unlink(missing_ok=True)
            for pid_file in (self.layout.run / "pods").glob("*.pid") if (self.layout.run / "pods").is_dir() else []:
                pid_file.unlink(missing_ok=True)
        return stopped

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory per component, the processes each one started included."""
        out = {}
        for name in COMPONENTS:
            pid = processes.running_pid(self.layout.run, name)
            out[name] = sum(processes.rss_bytes(p) for p in processes.group_pids(pid)) if pid else 0
        return out
