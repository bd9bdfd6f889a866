"""The process runner: real processes for pods that KWOK only pretends to run.

A container is run when its image starts with one of these markers:

- `caldera/enginesim` (any tag): `<python> -m enginesim <container args...> --host <podIP>
  --port <first containerPort>` (port 8000 when none is declared);
- `caldera/process` (any tag): the container's `command` + `args`, as a kubelet would run
  them (`$(VAR)` expanded from the container env).

The process gets the container's env (literal values and `fieldRef`s to the pod's name,
namespace, IP and node), plus `POD_IP`, `POD_NAME` and `POD_NAMESPACE`, and `PATH` starting
with this Python's bin directory so `python` is the same interpreter. It starts once the
pod is Running with an IP and no deletion timestamp, and is stopped (SIGTERM, then SIGKILL)
when the pod stops qualifying or goes away. KWOK starts such pods not Ready; the runner sets
Ready (and ContainersReady) once every process of the pod accepts TCP connections on its
container port (no port declared: once started), and back to not Ready if one exits. An
exited process is restarted after a back-off of 1, 2, 4, ... 30 s (restartPolicy Always). It also writes the Prometheus targets of
annotated pods (see `scrape`). Its output goes to
`<cluster dir>/logs/pods/<namespace>_<pod>_<container>.log` and its pid to
`<cluster dir>/run/pods/<pod uid>_<container>.pid` while it runs.

Run as a daemon: `python -m caldera.localcluster.runner --kubeconfig K --dir D --port P`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from caldera.localcluster import scrape

ENGINE_IMAGE = "caldera/enginesim"
PROCESS_IMAGE = "caldera/process"
DEFAULT_ENGINE_PORT = 8000

log = logging.getLogger("caldera.localcluster.runner")

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


@dataclass(frozen=True)
class Launch:
    """One process to run for one container of one pod."""

    key: str  # <pod uid>_<container name>
    namespace: str
    pod: str
    container: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    host: str = ""
    port: int | None = None  # the container is ready once this port accepts connections


def image_kind(image: str) -> str | None:
    """Which marker an image carries: "enginesim", "process" or None."""
    for prefix, kind in ((ENGINE_IMAGE, "enginesim"), (PROCESS_IMAGE, "process")):
        if image.startswith(prefix):
            return kind
    return None


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known vars are substituted, `$$` is a literal `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(sub, text)


def _field(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(annotations|labels)\['(.+)'\]", path)
    if match:
        source = annotations if match.group(1) == "annotations" else labels
        return str(source.get(match.group(2), ""))
    return ""


def container_env(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    env = {
        "POD_IP": status.get("podIP", ""),
        "POD_NAME": meta.get("name", ""),
        "POD_NAMESPACE": meta.get("namespace", ""),
    }
    for item in container.get("env") or []:
        name = item.get("name")
        if not name:
            continue
        if "value" in item:
            env[name] = expand(str(item.get("value") or ""), env)
        elif (item.get("valueFrom") or {}).get("fieldRef"):
            env[name] = _field(pod, item["valueFrom"]["fieldRef"].get("fieldPath", ""))
    return env


def _declared_port(container: dict[str, Any]) -> int | None:
    for port in container.get("ports") or []:
        if port.get("containerPort"):
            return int(port["containerPort"])
    return None


def _port(container: dict[str, Any]) -> int:
    return _declared_port(container) or DEFAULT_ENGINE_PORT


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


SetReady = Callable[[str, str, bool, list[str]], None]


def restart_backoff(restarts: int) -> float:
    """Seconds before restarting a process that exited for the n-th time: 1, 2, 4, ... 30."""
    return float(min(30, 2 ** max(0, restarts - 1)))


def launches_for(pod: dict[str, Any], python: str = sys.executable) -> list[Launch]:
    """The processes a pod should have right now (none unless it is Running with an IP)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    pod_ip = status.get("podIP")
    if status.get("phase") != "Running" or not pod_ip or meta.get("deletionTimestamp"):
        return []
    out = []
    for container in spec.get("containers") or []:
        kind = image_kind(str(container.get("image", "")))
        if kind is None:
            continue
        env = container_env(pod, container)
        args = [expand(str(a), env) for a in container.get("args") or []]
        ready_port: int | None = _port(container)
        if kind == "enginesim":
            argv = [python, "-m", "enginesim", *args, "--host", pod_ip, "--port", str(ready_port)]
        else:
            ready_port = _declared_port(container)
            command = [expand(str(c), env) for c in container.get("command") or []]
            if not command:
                log.warning("pod %s/%s container %s: image %s needs a command", meta.get("namespace"),
                            meta.get("name"), container.get("name"), container.get("image"))
                continue
            argv = [*command, *args]
        bin_dir = str(Path(python).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", os.environ.get("PATH", ""))
        out.append(Launch(key=f"{meta.get('uid')}_{container.get('name')}", namespace=str(meta.get("namespace")),
                          pod=str(meta.get("name")), container=str(container.get("name")), argv=tuple(argv),
                          env=tuple(sorted(env.items())), host=str(pod_ip), port=ready_port))
    return out


class Runner:
    """Keeps the running processes equal to what the pods ask for."""

    def __init__(self, directory: Path, python: str = sys.executable, set_ready: SetReady | None = None) -> None:
        self.dir = directory
        # Reports a pod's readiness (namespace, name, ready, container names) to the API.
        self.set_ready = set_ready
        self.observed_ready: dict[str, bool] = {}  # pod uid -> Ready condition as last seen
        self.reported_ready: dict[str, bool] = {}  # pod uid -> Ready we last asked for
        self.listening: set[str] = set()  # launch keys whose port accepted a connection
        self.exited_at: dict[str, float] = {}  # launch key -> when its process exited
        self.restarts: dict[str, int] = {}  # launch key -> restarts so far
        self.python = python
        self.pid_dir = directory / "run" / "pods"
        self.log_dir = directory / "logs" / "pods"
        self.procs: dict[str, tuple[Launch, subprocess.Popen[bytes]]] = {}
        self.wanted: dict[str, list[Launch]] = {}  # pod uid -> launches
        self.targets: dict[str, dict[str, Any]] = {}  # pod uid -> Prometheus target group
        self.targets_file = directory / "run" / "scrape-targets.json"
        self._written: list[dict[str, Any]] | None = None

    def observe(self, pod: dict[str, Any], deleted: bool = False) -> None:
        uid = str((pod.get("metadata") or {}).get("uid"))
        launches = [] if deleted else launches_for(pod, self.python)
        if launches:
            self.wanted[uid] = launches
            self.observed_ready[uid] = pod_ready(pod)
        else:
            self.wanted.pop(uid, None)
            self.observed_ready.pop(uid, None)
            self.reported_ready.pop(uid, None)
        group = None if deleted else scrape.target_group(pod)
        if group:
            self.targets[uid] = group
        else:
            self.targets.pop(uid, None)

    def resync(self, pods: list[dict[str, Any]]) -> None:
        self.wanted.clear()
        self.targets.clear()
        for pod in pods:
            self.observe(pod)

    def reconcile(self) -> None:
        groups = [self.targets[uid] for uid in sorted(self.targets)]
        if groups != self._written:
            scrape.write_targets(self.targets_file, groups)
            self._written = groups
        desired = {launch.key: launch for launches in self.wanted.values() for launch in launches}
        for key in list(self.procs):
            launch, proc = self.procs[key]
            if key not in desired or desired[key] != launch:
                self._stop(key)
        for key, launch in desired.items():
            if key not in self.procs:
                self._start(launch)
        now = time.monotonic()
        for key, (launch, proc) in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            if key not in self.exited_at:
                # Like a kubelet with restartPolicy Always: restart after a growing back-off.
                self.exited_at[key] = now
                self.restarts[key] = self.restarts.get(key, 0) + 1
                log.warning("process for %s/%s[%s] exited with code %s; restarting in %.0fs", launch.namespace,
                            launch.pod, launch.container, code, restart_backoff(self.restarts[key]))
                (self.pid_dir / f"{key}.pid").unlink(missing_ok=True)
                self.listening.discard(key)
            elif now - self.exited_at[key] >= restart_backoff(self.restarts[key]):
                del self.procs[key], self.exited_at[key]
                self._start(launch)
        self._report_readiness()

    def _launch_ready(self, launch: Launch) -> bool:
        entry = self.procs.get(launch.key)
        if entry is None or entry[1].poll() is not None:
            return False
        if launch.port is None or launch.key in self.listening:
            return True
        if listening(launch.host, launch.port):
            self.listening.add(launch.key)
            return True
        return False

    def _report_readiness(self) -> None:
        """Ready = every process of the pod runs and accepts connections (like a readiness probe)."""
        if self.set_ready is None:
            return
        for uid, launches in self.wanted.items():
            ready = all(self._launch_ready(launch) for launch in launches)
            if ready == self.observed_ready.get(uid) or ready == self.reported_ready.get(uid):
                continue
            try:
                self.set_ready(launches[0].namespace, launches[0].pod, ready, [x.container for x in launches])
            except Exception as err:  # the pod may be going away; the next event tells
                log.warning("cannot set Ready=%s on %s/%s: %s", ready, launches[0].namespace, launches[0].pod, err)
                continue
            self.reported_ready[uid] = ready

    def _start(self, launch: Launch) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = (self.log_dir / f"{launch.namespace}_{launch.pod}_{launch.container}.log").open("ab")
        try:
            proc = subprocess.Popen(list(launch.argv), env=dict(launch.env), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=self.dir)
        except OSError as err:
            log.error("cannot start %s/%s[%s] (%s): %s", launch.namespace, launch.pod, launch.container,
                      " ".join(launch.argv), err)
            out.close()
            return
        finally:
            out.close()
        self.procs[launch.key] = (launch, proc)
        (self.pid_dir / f"{launch.key}.pid").write_text(str(proc.pid))
        log.info("started %s/%s[%s] pid %d: %s", launch.namespace, launch.pod, launch.container, proc.pid,
                 " ".join(launch.argv))

    def _stop(self, key: str, grace: float = 5.0) -> None:
        launch, proc = self.procs.pop(key)
        self.listening.discard(key)
        self.exited_at.pop(key, None)
        self.restarts.pop(key, None)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        (self.pid_dir / f"{key}.pid").unlink(missing_ok=True)
        log.info("stopped %s/%s[%s] (exit %s)", launch.namespace, launch.pod, launch.container, proc.returncode)

    def stop_all(self) -> None:
        for key in list(self.procs):
            self._stop(key)


def _watch(kubeconfig: Path, events: queue.Queue[tuple[str, Any]]) -> None:
    """Feed ("resync", [pods]) and ("event", (type, pod)) into the queue, forever."""
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api_client)
    while True:
        try:
            listing = core.list_pod_for_all_namespaces(_preload_content=False)
            body = json.loads(listing.data)  # type: ignore[attr-defined]
            events.put(("resync", body.get("items") or []))
            version = body["metadata"]["resourceVersion"]
            stream = watch.Watch().stream(core.list_pod_for_all_namespaces, resource_version=version,
                                          timeout_seconds=300, _preload_content=False)
            for event in stream:
                raw = event.get("raw_object") or {}
                if event.get("type") == "ERROR":
                    break
                events.put(("event", (event.get("type"), raw)))
        except Exception as err:  # the API server restarting must not kill the runner
            log.warning("pod watch failed (%s); re-listing", err)
            events.put(("error", str(err)))
            stop = threading.Event()
            stop.wait(1.0)


@click.command()
@click.option("--kubeconfig", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--port", type=int, required=True, help="Loopback port for the runner's /metrics.")
def main(kubeconfig: Path, directory: Path, port: int) -> None:
    """Run processes for engine-marked pods of the local cluster."""
    from prometheus_client import Gauge, start_http_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    gauge = Gauge("caldera_runner_processes", "Processes the runner is running for pods")
    start_http_server(port, addr="127.0.0.1")
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

    def set_ready(namespace: str, name: str, ready: bool, containers: list[str]) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = "True" if ready else "False"
        reason = None if ready else "ProcessNotListening"
        body = {"status": {
            "conditions": [{"type": t, "status": status, "reason": reason, "lastTransitionTime": now}
                           for t in ("ContainersReady", "Ready")],
            "containerStatuses": [{"name": c, "ready": ready} for c in containers],
        }}
        core.patch_namespaced_pod_status(name, namespace, body)
        log.info("pod %s/%s Ready=%s", namespace, name, status)

    runner = Runner(directory, set_ready=set_ready)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=_watch, args=(kubeconfig, events), daemon=True).start()
    log.info("runner watching pods (markers: %s, %s)", ENGINE_IMAGE, PROCESS_IMAGE)
    while not stopping.is_set():
        try:
            kind, payload = events.get(timeout=0.5)
        except queue.Empty:
            kind, payload = "tick", None
        if kind == "resync":
            runner.resync(payload)
        elif kind == "event":
            event_type, pod = payload
            runner.observe(pod, deleted=event_type == "DELETED")
        runner.reconcile()
        gauge.set(len(runner.procs))
    runner.stop_all()
    log.info("runner stopped")


if __name__ == "__main__":
    main()
