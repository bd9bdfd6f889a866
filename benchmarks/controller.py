"""ModelServing controller benchmark on `rack-256`, printed as JSON.

A ModelServing with 100 ServingGroups of 8 pods (prefill 1x(1+3) + decode 1x(1+3), 1 GPU each,
groupPolicy tier 2, rolePolicy tier 1, gang-scheduled by Volcano) is created against a running
`caldera controller --placement=volcano`. Reported:

- seconds until all pods exist, until all 800 are Running, until the ModelServing is Available;
- API requests per reconcile, counted client-side (the controller's
  `caldera_controller_api_requests_total` over `caldera_modelserving_reconciles_total`), and the
  apiserver's own `apiserver_request_total` delta for the whole cluster, for context;
- writes at steady state (must be 0): controller writes during a window in which every
  ModelServing is re-listed and re-planned (resync every few seconds) and pods are touched.

    caldera cluster up --topology rack-256 --dir ~/.cache/caldera/bench-rack-256
    .venv/bin/python benchmarks/controller.py --dir ~/.cache/caldera/bench-rack-256

The cluster is started in --dir if it is not already running there (and left running).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import httpx
from kubernetes import client

from caldera.localcluster.cluster import Cluster

GROUP, VERSION, PLURAL = "workload.serving.volcano.sh", "v1alpha1", "modelservings"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def _sum(metrics: dict[str, float], prefix: str, contains: str = "") -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix) and contains in k)


def _apiserver_requests(api: Any) -> dict[str, float]:
    _, url, headers, _, _ = api.param_serialize(method="GET", resource_path="/metrics", auth_settings=["BearerToken"])
    resp = api.call_api("GET", url, header_params=headers)
    totals: dict[str, float] = {"all": 0.0, "writes": 0.0}
    for line in resp.read().decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            value = float(line.rsplit(" ", 1)[1])
            totals["all"] += value
            if any(f'verb="{v}"' in line for v in ("POST", "PUT", "PATCH", "DELETE", "APPLY")):
                totals["writes"] += value
    return totals


def _until(what: str, check: Any, timeout: float, interval: float = 0.5) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except httpx.HTTPError:
            pass  # the controller is not listening yet
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s")


def _role(name: str, workers: int, image: str) -> dict[str, Any]:
    pod = {"spec": {"containers": [{"name": "engine", "image": image, "resources": {
        "requests": {"cpu": "100m", "memory": "128Mi", "nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}]}}
    return {"name": name, "replicas": 1, "workerReplicas": workers, "entryTemplate": pod, "workerTemplate": pod}


def manifest(groups: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServing",
        "metadata": {"name": "bench"},
        "spec": {"replicas": groups, "schedulerName": "volcano", "template": {
            "networkTopology": {"groupPolicy": {"mode": "hard", "highestTierAllowed": 2},
                                "rolePolicy": {"mode": "hard", "highestTierAllowed": 1}},
            "roles": [_role("prefill", 3, "registry.local/engine:v1"), _role("decode", 3, "registry.local/engine:v1")],
        }},
    }


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path.home() / ".cache" / "caldera" / "bench-rack-256", show_default=True)
@click.option("--topology", default="rack-256", show_default=True)
@click.option("--groups", default=100, show_default=True)
@click.option("--steady-seconds", default=30.0, show_default=True)
@click.option("--timeout", default=900.0, show_default=True)
def main(directory: Path, topology: str, groups: int, steady_seconds: float, timeout: float) -> None:
    cluster = Cluster(directory)
    if not cluster.healthy():
        cluster.up(topology, progress=lambda m: print(f"[cluster] {m}", file=sys.stderr))
    kubeconfig = str(cluster.kubeconfig)
    os.environ["KUBECONFIG"] = kubeconfig
    from caldera.kube import api_client

    api = api_client(kubeconfig)
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    port = _free_port()
    log_path = directory / "logs" / f"controller-{namespace}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "caldera.cli", "--log-format", "json", "controller", "--placement=volcano",
         "--peering", "", "--no-webhooks", "--namespace", namespace, "--metrics-port", str(port),
         "--health-port", "0", "--resync-seconds", "10"],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env={**os.environ})
    try:
        _until("controller ready", lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
               if proc.poll() is None else sys.exit(f"controller exited; see {log_path}"), 60)
        total = groups * 8

        def pods() -> list[dict[str, Any]]:
            data = core.list_namespaced_pod(namespace, _preload_content=False).data
            return list(json.loads(data)["items"])

        def running() -> int:
            return sum(1 for p in pods() if (p.get("status") or {}).get("phase") == "Running")

        def available() -> bool:
            ms = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "bench")
            conds = {c["type"]: c["status"] for c in (ms.get("status") or {}).get("conditions") or []}
            return conds.get("Available") == "True" and (ms.get("status") or {}).get("availableReplicas") == groups

        server_before = _apiserver_requests(api)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(groups))
        created = _until("all pods created", lambda: len(pods()) >= total, timeout)
        all_running = _until("all pods Running", lambda: running() >= total, timeout)
        all_available = _until("ModelServing Available", available, timeout)
        _until("queue drained", lambda: _sum(_metrics(port), "caldera_modelserving_queue_depth") == 0, 60)
        busy = _metrics(port)
        server_after = _apiserver_requests(api)

        # Steady state: resyncs re-list and re-plan; touching pods wakes the reconcile loop too.
        steady_start = _metrics(port)
        for pod in pods()[:50]:
            core.patch_namespaced_pod(pod["metadata"]["name"], namespace, {"metadata": {"annotations": {"bench": "1"}}})
        time.sleep(steady_seconds)
        steady_end = _metrics(port)

        reconciles = _sum(busy, "caldera_modelserving_reconciles_total")
        requests = _sum(busy, "caldera_controller_api_requests_total")
        writes = _sum(busy, "caldera_modelserving_writes_total")
        steady_reconciles = (_sum(steady_end, "caldera_modelserving_reconciles_total")
                             - _sum(steady_start, "caldera_modelserving_reconciles_total"))
        print(json.dumps({
            "topology": topology,
            "servinggroups": groups,
            "pods": total,
            "seconds_to_all_pods_created": round(created, 1),
            "seconds_to_all_pods_running": round(created + all_running, 1),
            "seconds_to_available": round(created + all_running + all_available, 1),
            "controller": {
                "reconciles": int(reconciles),
                "api_requests": int(requests),
                "api_requests_per_reconcile": round(requests / reconciles, 2) if reconciles else None,
                "writes": int(writes),
                "writes_per_pod": round(writes / total, 3),
                "reconcile_seconds_mean": round(_sum(busy, "caldera_modelserving_reconcile_duration_seconds_sum")
                                                / max(_sum(busy, "caldera_modelserving_reconcile_duration_seconds_count"), 1), 4),
            },
            "apiserver_requests_all_clients": int(server_after["all"] - server_before["all"]),
            "apiserver_writes_all_clients": int(server_after["writes"] - server_before["writes"]),
            "steady_state": {
                "window_seconds": steady_seconds,
                "reconciles": int(steady_reconciles),
                "writes": int(_sum(steady_end, "caldera_modelserving_writes_total")
                              - _sum(steady_start, "caldera_modelserving_writes_total")),
                "api_requests": int(_sum(steady_end, "caldera_controller_api_requests_total")
                                    - _sum(steady_start, "caldera_controller_api_requests_total")),
            },
        }, indent=2))
    finally:
        try:
            if custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
                custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "bench")
            _until("ModelServing deleted", lambda: not custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL)["items"], 120)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            core.delete_namespace(namespace)


if __name__ == "__main__":
    main()
