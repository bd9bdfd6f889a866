"""`caldera up` / `caldera down` (`make up` / `make down`): the whole of Caldera on one machine.

`up` builds or reuses the cluster binaries, starts the embedded local cluster
(caldera.localcluster), runs `caldera controller` (which serves and registers the admission
webhooks) and `caldera router` as background processes logging into the cluster directory,
applies examples/quickstart/, waits until the model answers through the router, prints one
chat completion, then shows a live status view. Ctrl-C tears everything down; `--detach`
leaves it running for `caldera down`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from caldera.localcluster import build, processes
from caldera.localcluster.cluster import DEFAULT_DIR, Cluster, ClusterError
from caldera.localcluster.processes import ProcessSpec
from caldera.localcluster.prometheus import PrometheusError
from caldera.localcluster.resources import Client

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = REPO_ROOT / "examples" / "quickstart"
NAMESPACE = "default"
MODEL = "qwen3-8b"
CONTROLLER, ROUTER = "caldera-controller", "caldera-router"
STATE_FILE = "walkthrough.json"
PROMPT = "In one sentence: what does Caldera do?"

console = Console(stderr=True, highlight=False, soft_wrap=True)


class WalkthroughError(RuntimeError):
    """A step failed; the message says what happened and what to do."""


# ---- ports and state ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    controller_metrics: int
    controller_health: int
    webhook: int
    router: int

    @classmethod
    def load_or_allocate(cls, directory: Path) -> Ports:
        path = directory / STATE_FILE
        if path.is_file():
            return cls(**json.loads(path.read_text())["ports"])
        ports = cls(_free_port(), _free_port(), _free_port(), _free_port())
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"ports": ports.__dict__}))
        return ports


# ---- steps --------------------------------------------------------------------------------------


def step(message: str) -> None:
    console.print(f"[bold cyan]==>[/] {message}")


def _wait(what: str, check: Callable[[], bool], timeout: float, hint: str, interval: float = 0.5) -> None:
    """Poll `check` until it holds, with a spinner; fail with `hint` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {what}"):
        while True:
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                raise WalkthroughError(f"{what} did not happen within {timeout:.0f}s. {hint}")
            _pause(interval)


def _pause(seconds: float) -> None:
    """The interval between two polls of a condition (the polling helpers' only wait)."""
    threading.Event().wait(seconds)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200


def _start(cluster: Cluster, name: str, argv: list[str]) -> None:
    run, logs = cluster.dir / "run", cluster.dir / "logs"
    if processes.running_pid(run, name) is not None:
        console.print(f"    {name}: already running (log: {logs / (name + '.log')})")
        return
    # KUBECONFIG too, not only --kubeconfig: kopf's own login reads the environment.
    processes.start(ProcessSpec(name, argv, {"KUBECONFIG": str(cluster.kubeconfig)}), run, logs)
    console.print(f"    {name}: started (log: {logs / (name + '.log')})")


def _caldera(*args: str) -> list[str]:
    return [sys.executable, "-m", "caldera.cli", "--log-format", "json", *args]


def start_controller(cluster: Cluster, ports: Ports) -> None:
    _start(cluster, CONTROLLER, _caldera(
        "controller", f"--kubeconfig={cluster.kubeconfig}", f"--metrics-port={ports.controller_metrics}",
        f"--health-port={ports.controller_health}", f"--webhook-port={ports.webhook}",
        f"--tls-dir={cluster.dir / 'webhook-tls'}"))


def start_router(cluster: Cluster, ports: Ports) -> None:
    _start(cluster, ROUTER, _caldera("router", f"--kubeconfig={cluster.kubeconfig}", "--host=127.0.0.1",
                                     f"--port={ports.router}"))


def start_components(cluster: Cluster, ports: Ports) -> None:
    """Start the controller and the router together (each takes seconds to import), then wait for both."""
    step("Starting the controller (ModelServing, placement, autoscaler, admission webhooks) and the router")
    start_controller(cluster, ports)
    start_router(cluster, ports)
    logs = cluster.dir / "logs"
    _wait("the controller to be ready", lambda: _http_ok(f"http://127.0.0.1:{ports.controller_metrics}/readyz"),
          120, f"See {logs / (CONTROLLER + '.log')}; then `make down` and `make up` again.")
    _wait("the router to be ready", lambda: _http_ok(f"http://127.0.0.1:{ports.router}/readyz"), 60,
          f"See {logs / (ROUTER + '.log')}; then `make down` and `make up` again.")


def quickstart_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(QUICKSTART.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
            if isinstance(doc, dict)]


def apply_quickstart(cluster: Cluster) -> list[str]:
    step(f"Applying {QUICKSTART.relative_to(REPO_ROOT)}/ (ModelServing with prefill/decode, canary, routes, "
         "autoscaling)")
    objects = quickstart_objects()
    for obj in objects:
        obj["metadata"].setdefault("namespace", NAMESPACE)
    try:
        applied = Client(cluster.kubeconfig).apply_objects(objects)
    except ApiException as exc:
        raise WalkthroughError(f"applying the quickstart was refused: {exc.status} {exc.reason}: {exc.body}. "
                               "If the admission webhook rejected it, the message names the field; fix "
                               f"{QUICKSTART} and run `make up` again.") from exc
    for name in applied:
        console.print(f"    applied {name}")
    return applied


def expected_pods() -> int:
    total = 0
    for obj in quickstart_objects():
        if obj["kind"] == "ModelServing":
            spec = obj["spec"]
            total += spec.get("replicas", 1) * sum(
                role.get("replicas", 1) * (1 + role.get("workerReplicas", 0)) for role in spec["template"]["roles"])
    return total


def _items(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """The `items` of a list call as plain dicts (camelCase, as the API server sends them)."""
    response = call(*args, _preload_content=False, **kwargs)
    return list(json.loads(response.data)["items"])


def engine_pods(api: client.ApiClient) -> list[dict[str, Any]]:
    return _items(client.CoreV1Api(api).list_namespaced_pod, NAMESPACE,
                  label_selector="modelserving.volcano.sh/name")


def running_pods(api: client.ApiClient) -> list[dict[str, Any]]:
    return [p for p in engine_pods(api) if p.get("status", {}).get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def wait_for_pods(cluster: Cluster, timeout: float = 300) -> None:
    want = expected_pods()
    api = cluster_api(cluster)
    deadline = time.monotonic() + timeout
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("engine pods Running and Ready", total=want)
        while True:
            ready = len(running_pods(api))
            progress.update(task, completed=min(ready, want))
            if ready >= want:
                return
            if time.monotonic() > deadline:
                raise WalkthroughError(
                    f"only {ready} of {want} engine pods became Ready in {timeout:.0f}s. Look at "
                    f"`kubectl --kubeconfig {cluster.kubeconfig} get pods,podgroups -n {NAMESPACE}` (Pending pods "
                    f"show Volcano's reason) and {cluster.dir / 'logs'}/caldera-controller.log.")
            _pause(1.0)


def chat(ports: Ports, prompt: str = PROMPT) -> dict[str, Any]:
    response = httpx.post(f"http://127.0.0.1:{ports.router}/v1/chat/completions", timeout=30.0, json={
        "model": MODEL, "max_tokens": 48, "messages": [{"role": "user", "content": prompt}]})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def first_completion(cluster: Cluster, ports: Ports, timeout: float = 120) -> dict[str, Any]:
    step(f"Sending a chat completion for model {MODEL!r} through the router")
    result: dict[str, Any] = {}

    def answered() -> bool:
        result.update(chat(ports))
        return True

    _wait("the first completion", answered, timeout,
          f"The router answered errors; see {cluster.dir / 'logs'}/caldera-router.log and "
          f"http://127.0.0.1:{ports.router}/debug/state.")
    return result


def print_completion(body: dict[str, Any], elapsed: float) -> None:
    text = body["choices"][0]["message"]["content"]
    usage = body.get("usage", {})
    tokens = f"{usage.get('prompt_tokens', '?')} prompt + {usage.get('completion_tokens', '?')} completion tokens"
    console.print(Panel(f"[bold]user:[/] {PROMPT}\n[bold]{body.get('model', MODEL)}:[/] {text.strip()}",
                        title=f"first completion after {elapsed:.1f}s", subtitle=tokens))


# ---- live status ----------------------------------------------------------------------------------


def cluster_api(cluster: Cluster) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def node_hypernodes(api: client.ApiClient) -> dict[str, str]:
    """Node name -> its tier-1 HyperNode (exactMatch and labelMatch members)."""
    custom = client.CustomObjectsApi(api)
    nodes = _items(client.CoreV1Api(api).list_node)
    result: dict[str, str] = {}
    for hn in _items(custom.list_cluster_custom_object, "topology.volcano.sh", "v1alpha1", "hypernodes"):
        if hn["spec"].get("tier") != 1:
            continue
        for member in hn["spec"].get("members", []):
            selector = member.get("selector", {})
            if "exactMatch" in selector:
                result[selector["exactMatch"]["name"]] = hn["metadata"]["name"]
            labels = selector.get("labelMatch", {}).get("matchLabels", {})
            if labels:
                for node in nodes:
                    if all(node["metadata"].get("labels", {}).get(k) == v for k, v in labels.items()):
                        result[node["metadata"]["name"]] = hn["metadata"]["name"]
    return result


def pods_table(api: client.ApiClient) -> Table:
    table = Table(title="ServingGroups and pods", expand=True)
    for column in ("ModelServing", "ServingGroup", "role", "pod", "phase", "node", "HyperNode", "IP"):
        table.add_column(column)
    leafs = node_hypernodes(api)
    for pod in sorted(engine_pods(api), key=lambda p: str(p["metadata"]["name"])):
        labels = pod["metadata"].get("labels", {})
        node = pod["spec"].get("nodeName") or "-"
        status = pod.get("status", {})
        table.add_row(labels.get("modelserving.volcano.sh/name", ""), labels.get("modelserving.volcano.sh/group-name", ""),
                      labels.get("modelserving.volcano.sh/role", ""), pod["metadata"]["name"],
                      status.get("phase", ""), node, leafs.get(node, "-"), status.get("podIP", "-"))
    return table


def router_table(ports: Ports) -> Table:
    table = Table(title="Router endpoints (from /debug/state)", expand=True)
    for column in ("endpoint", "server", "role", "healthy", "in flight", "waiting", "KV usage", "last score"):
        table.add_column(column)
    try:
        state = httpx.get(f"http://127.0.0.1:{ports.router}/debug/state", timeout=2.0).json()
    except (httpx.HTTPError, ValueError) as exc:
        table.add_row(f"router unreachable: {exc}", *[""] * 7)
        return table
    totals: dict[str, Any] = {}
    for decision in state.get("recentDecisions") or []:  # oldest first: later decisions win
        totals.update(decision.get("totals") or {})
    for ep in state.get("endpoints", []):
        metrics = ep.get("metrics", {})
        score = totals.get(ep["name"])
        table.add_row(ep["name"], str(ep.get("server", "")), str(ep.get("role") or "-"), str(ep.get("healthy")),
                      str(ep.get("inflightRequests", 0)), str(metrics.get("waiting", "-")),
                      f"{metrics.get('kvUsage') or 0:.1%}", f"{score:.3f}" if isinstance(score, float) else "-")
    return table


def autoscaler_table(api: client.ApiClient) -> Table:
    table = Table(title="Autoscaler decisions", expand=True)
    for column in ("binding", "current", "desired", "mode", "last scale", "latest event"):
        table.add_column(column)
    custom = client.CustomObjectsApi(api)
    bindings = _items(custom.list_namespaced_custom_object, "workload.serving.volcano.sh", "v1alpha1", NAMESPACE,
                      "autoscalingpolicybindings")
    events = _items(client.CoreV1Api(api).list_namespaced_event, NAMESPACE)
    for binding in bindings:
        name = binding["metadata"]["name"]
        status = binding.get("status") or {}
        flat = {**status, **(status.get("homogeneousStatus") or {})}
        mine = sorted((e for e in events if e["involvedObject"].get("name") == name),
                      key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or e["metadata"]["creationTimestamp"]))
        latest = f"{mine[-1].get('reason')}: {mine[-1].get('message')}" if mine else "-"
        table.add_row(name, str(flat.get("currentReplicas", "-")), str(flat.get("desiredReplicas", "-")),
                      str(flat.get("mode", "-")), str(flat.get("lastScaleTime", "-")), latest)
    return table


def status_view(api: client.ApiClient, ports: Ports) -> Group:
    parts: list[Any] = []
    for build_table in (lambda: pods_table(api), lambda: router_table(ports), lambda: autoscaler_table(api)):
        try:
            parts.append(build_table())
        except (ApiException, httpx.HTTPError, KeyError) as exc:
            parts.append(Panel(f"unavailable: {exc}"))
    parts.append(f"router: http://127.0.0.1:{ports.router}   Ctrl-C stops everything")
    return Group(*parts)


def live_status(cluster: Cluster, ports: Ports) -> None:
    api = cluster_api(cluster)
    with Live(status_view(api, ports), console=console, refresh_per_second=1, screen=False) as live:
        while True:
            _pause(2.0)
            live.update(status_view(api, ports))


# ---- up / down ------------------------------------------------------------------------------------


def stop_everything(directory: Path) -> None:
    cluster = Cluster(directory)
    for name in (ROUTER, CONTROLLER):
        if processes.stop(cluster.dir / "run", name):
            console.print(f"    {name}: stopped")
    for name in cluster.down(progress=lambda m: console.print(f"    {m}")):
        del name
    (directory / STATE_FILE).unlink(missing_ok=True)


@contextlib.contextmanager
def _explained_failures() -> Iterator[None]:
    try:
        yield
    except (WalkthroughError, ClusterError, build.BuildError, PrometheusError, ValueError) as exc:
        console.print(f"[bold red]failed:[/] {exc}")
        console.print("Everything started so far is still running for inspection; `make down` stops it.")
        raise SystemExit(1) from None


def run_up(topology: str, detach: bool, directory: Path) -> float:
    """Bring everything up; return seconds to the first completion. Ctrl-C at any point tears down."""
    try:
        return _run_up(topology, detach, directory)
    except KeyboardInterrupt:
        step("Ctrl-C: tearing everything down")
        stop_everything(directory)
        console.print("stopped.")
        return 0.0


def _run_up(topology: str, detach: bool, directory: Path) -> float:
    started = time.monotonic()
    cluster = Cluster(directory)
    with _explained_failures():
        step("Building or reusing the cluster binaries (etcd, kube-apiserver, Volcano, KWOK; cached in "
             "~/.cache/caldera/bin)")
        build.build_all(lambda m: console.print(f"    {m}"))
        step(f"Starting the local cluster (topology {topology!r}) in {directory}")
        cluster.up(topology, progress=lambda m: console.print(f"    {m}"))
        ports = Ports.load_or_allocate(directory)
        start_components(cluster, ports)
        apply_quickstart(cluster)
        wait_for_pods(cluster)
        body = first_completion(cluster, ports)
    elapsed = time.monotonic() - started
    print_completion(body, elapsed)
    console.print(f"kubeconfig: {cluster.kubeconfig}\nrouter:     http://127.0.0.1:{ports.router}/v1\n"
                  f"logs:       {directory / 'logs'}")
    if detach:
        stop = "make down" if directory == DEFAULT_DIR.resolve() else f"caldera down --dir {directory}"
        console.print(f"Detached: everything keeps running; `{stop}` stops it.")
        return elapsed
    live_status(cluster, ports)  # until Ctrl-C (KeyboardInterrupt), handled by run_up
    return elapsed


@click.command("up")
@click.option("--topology", default="small", show_default=True,
              help="Topology of the local cluster (deploy/local/topologies/NAME.yaml or a spec file).")
@click.option("--detach", is_flag=True, help="Leave everything running and return; `caldera down` stops it.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, envvar="CALDERA_CLUSTER_DIR", help="Cluster directory (state, logs, kubeconfig).")
def up_command(topology: str, detach: bool, directory: Path) -> None:
    """Bring up the local cluster, controller, router and the quickstart model; print a completion."""
    run_up(topology, detach, directory.resolve())


@click.command("down")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, envvar="CALDERA_CLUSTER_DIR", help="Cluster directory (state, logs, kubeconfig).")
def down_command(directory: Path) -> None:
    """Stop the router, the controller and the local cluster started by `caldera up`."""
    step(f"Stopping everything in {directory}")
    stop_everything(directory.resolve())
    console.print("stopped.")
