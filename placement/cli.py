"""`caldera plan` (dry-run placement of a ModelServing) and `caldera placement extender`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from placement.gangs import gang_from_objects
from placement.model import Gang
from placement.plan import Plan
from placement.snapshot import Snapshot
from placement.solver import SolveOptions, solve
from topology.graph import ROOT, Topology
from topology.resources import CPU, GPU, MEMORY, format_resources

TOPOLOGIES_DIR = Path(__file__).resolve().parents[1] / "deploy" / "local" / "topologies"


def load_documents(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: cannot read YAML: {exc}") from exc
    out: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            out.extend(doc.get("items") or [])
        elif isinstance(doc, dict):
            out.append(doc)
    return out


def gangs_from_documents(docs: list[dict[str, Any]], tier_names: dict[str, int] | None = None) -> list[Gang]:
    """ModelServings are expanded into their ServingGroups (pods + PodGroup) as the controller would;
    PodGroups and Pods given directly are grouped by `scheduling.k8s.io/group-name`."""
    gangs: list[Gang] = []
    podgroups = {(d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d
                 for d in docs if d.get("kind") == "PodGroup"}
    loose: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for doc in docs:
        kind = doc.get("kind")
        if kind == "ModelServing":
            gangs.extend(_modelserving_gangs(doc, tier_names))
        elif kind == "Pod":
            meta = doc["metadata"]
            group = (meta.get("annotations") or {}).get("scheduling.k8s.io/group-name", meta["name"])
            loose.setdefault((meta.get("namespace", "default"), group), []).append(doc)
    for key, pods in loose.items():
        gangs.append(gang_from_objects(podgroups.get(key), pods, tier_names=tier_names))
    if not gangs:
        raise click.ClickException("no ModelServing, PodGroup or Pod found in the input")
    return gangs


def _modelserving_gangs(obj: dict[str, Any], tier_names: dict[str, int] | None) -> list[Gang]:
    # The ModelServing controller's own rendering, so the plan names the pods it will create.
    from modelserving.desired import PodOptions, serving_group
    from modelserving.spec import SpecError, parse_modelserving

    obj = {**obj, "metadata": {"namespace": "default", "uid": "plan", **obj.get("metadata", {})}}
    try:
        ms = parse_modelserving(obj)
    except SpecError as exc:
        raise click.ClickException(f"ModelServing {obj['metadata'].get('name')}: {exc}") from exc
    gangs = []
    for ordinal in range(ms.replicas):
        group = serving_group(ms, ms.template, ordinal, "plan", PodOptions(placement_gate=True))
        try:
            gangs.append(gang_from_objects(group.podgroup, group.pods, tier_names=tier_names))
        except ValueError as exc:
            raise click.ClickException(f"ModelServing {ms.name}: {exc}") from exc
    return gangs


def topology_from_file(ref: str) -> Topology:
    from topology.spec import load_topology

    path = Path(ref)
    if not path.exists() and not path.suffix:
        path = TOPOLOGIES_DIR / f"{ref}.yaml"
    try:
        return load_topology(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def topology_from_cluster(kubeconfig: str | None) -> Topology:
    from kubernetes import client

    from caldera.kube import api_client
    from topology.kube import topology_from_objects

    api = api_client(kubeconfig)
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    nodes = api.sanitize_for_serialization(core.list_node().items)
    pods = api.sanitize_for_serialization(core.list_pod_for_all_namespaces().items)
    try:
        listed: Any = custom.list_cluster_custom_object("topology.volcano.sh", "v1alpha1", "hypernodes")
        hypernodes = listed["items"]
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        hypernodes = []
    return topology_from_objects(nodes, hypernodes, pods)


def render(plan: Plan, snapshot: Snapshot, gangs: list[Gang], out: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=140)
    pods = Table(title="Placement plan", show_lines=False)
    for column in ("gang", "role replica", "pod", "node", "leaf (tier 1)", "role spans", "requests"):
        pods.add_column(column)
    for gang in gangs:
        result = plan.results[gang.name]
        for rr in gang.role_replicas:
            domain = result.role_domains.get(rr.name)
            for pod in rr.pods:
                node = result.assignments.get(pod.name)
                pods.add_row(
                    gang.name, rr.name, pod.name, node or "[red]unplaced[/red]",
                    snapshot.leaf_of[node] if node else "-",
                    f"{domain[0]} (tier {domain[1]})" if domain else "-",
                    format_resources({k: v for k, v in pod.requests.items() if k in (GPU, CPU, MEMORY)}),
                )
    console.print(pods)
    summary = Table(title="Gangs")
    for column in ("gang", "placed", "group spans", "reason"):
        summary.add_column(column)
    for gang in gangs:
        result = plan.results[gang.name]
        reasons = [str(result.reason)] if result.reason else []
        reasons += [f"{k}: {v}" for k, v in result.unplaced_role_replicas.items()]
        summary.add_row(gang.name, "yes" if result.placed else "[red]no[/red]",
                        f"{result.group_domain} (tier {result.group_tier})" if result.group_domain else "-",
                        "\n".join(reasons) or "-")
    console.print(summary)
    free = plan.free_after(snapshot, gangs)
    domains = Table(title="Free capacity per domain after the plan")
    for column in ("domain", "tier", "free GPUs", "free CPU", "free memory"):
        domains.add_column(column)
    for name in sorted(snapshot.domains, key=lambda d: (-snapshot.tier[d], d)):
        if name == ROOT and len(snapshot.domains) > 1:
            continue
        f = free[name]
        domains.add_row(name, str(snapshot.tier[name]), str(f.get(GPU, 0)), f"{f.get(CPU, 0) / 1000:g}",
                        f"{f.get(MEMORY, 0) / 2**30:.0f}Gi")
    console.print(domains)
    console.print(f"status {plan.status}, gap {plan.gap:.4f}, solved in {plan.solve_seconds * 1000:.0f} ms, "
                  f"{len(plan.placed)}/{len(gangs)} gangs placed")


@click.command("plan")
@click.option("-f", "--filename", "filename", required=True, type=click.Path(exists=True, dir_okay=False,
                                                                                path_type=Path),
              help="ModelServing manifest (or PodGroup + Pods), YAML, several documents allowed.")
@click.option("--topology", "topology_ref", default=None,
              help="Topology spec file, or a name under deploy/local/topologies/ (e.g. small, rack-256).")
@click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False),
              help="Read nodes, HyperNodes and running pods from this cluster instead.")
@click.option("--time-limit", type=float, default=5.0, show_default=True, help="Solver time limit, seconds.")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
def plan_command(filename: Path, topology_ref: str | None, kubeconfig: str | None, time_limit: float,
                 output: str) -> None:
    """Dry-run placement: where every pod would go, the tiers used, free capacity left, and why not."""
    if topology_ref and kubeconfig:
        raise click.UsageError("give either --topology or --kubeconfig, not both")
    topo = topology_from_cluster(kubeconfig) if (kubeconfig or not topology_ref) else topology_from_file(topology_ref)
    gangs = gangs_from_documents(load_documents(filename), topo.tier_names())
    snapshot = Snapshot.from_topology(topo)
    plan = solve(snapshot, gangs, SolveOptions(time_limit_s=time_limit))
    if output == "json":
        click.echo(json.dumps(plan.to_dict(), indent=2))
    else:
        render(plan, snapshot, gangs, sys.stdout)
    if plan.unplaced:
        sys.exit(2)


@click.group("placement")
def placement_command() -> None:
    """Placement services."""


@placement_command.command("extender")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8889, show_default=True)
@click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False), envvar="KUBECONFIG",
              help="Cluster whose HyperNodes define the topology (nodes and pods come from Volcano's calls).")
@click.option("--time-limit", type=float, default=0.5, show_default=True,
              help="Solver time limit per session; keep it under Volcano's extender.httpTimeout (1s).")
def extender_command(host: str, port: int, kubeconfig: str | None, time_limit: float) -> None:
    """Serve the Volcano extender verbs (jobEnqueueable, predicate, prioritize, ...) over HTTP."""
    from placement.extender import ExtenderSettings, run_extender

    run_extender(ExtenderSettings(host=host, port=port, kubeconfig=kubeconfig, time_limit_s=time_limit))
