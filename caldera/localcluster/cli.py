"""`caldera cluster build|up|down|status`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from caldera.localcluster import build as build_mod
from caldera.localcluster.cluster import DEFAULT_DIR, Cluster, ClusterError

_dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                           default=DEFAULT_DIR, show_default=True, envvar="CALDERA_CLUSTER_DIR",
                           help="Cluster directory (state, logs, kubeconfig).")


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.group("cluster")
def cluster_command() -> None:
    """Build, start, stop and inspect the embedded local cluster."""


@cluster_command.command("build")
def build_command() -> None:
    """Build (or reuse from the cache) etcd, kube-apiserver, kube-controller-manager, Volcano and KWOK."""
    try:
        took = build_mod.build_all(_progress)
    except build_mod.BuildError as err:
        raise click.ClickException(str(err)) from err
    for component in build_mod.COMPONENTS:
        click.echo(f"{component.name:<12} {component.version:<10} {component.bin_dir}  "
                   f"({f'built in {took[component.name]:.0f}s' if took[component.name] else 'cached'})")


@cluster_command.command("up")
@click.option("--topology", "topology_ref", default="small", show_default=True,
              help="Topology name (deploy/local/topologies/NAME.yaml) or a spec file.")
@_dir_option
def up_command(topology_ref: str, directory: Path) -> None:
    """Start the cluster (reusing what already runs in DIR) and print the kubeconfig path."""
    cluster = Cluster(directory)
    try:
        cluster.up(topology_ref, progress=_progress)
    except (ClusterError, build_mod.BuildError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"export KUBECONFIG={cluster.kubeconfig}")
    click.echo(f"# prometheus: {cluster.prometheus_url}")


@cluster_command.command("down")
@click.option("--keep-data", is_flag=True, help="Keep etcd and Prometheus data for the next `up`.")
@_dir_option
def down_command(keep_data: bool, directory: Path) -> None:
    """Stop every component of the cluster in DIR."""
    stopped = Cluster(directory).down(progress=_progress, wipe=not keep_data)
    click.echo(f"stopped {len(stopped)} components" if stopped else "nothing was running")


@cluster_command.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_dir_option
def status_command(as_json: bool, directory: Path) -> None:
    """Report each component: pid and health. Exit code 1 unless all are healthy."""
    cluster = Cluster(directory)
    status = cluster.status()
    ok = all(s["healthy"] for s in status.values())
    if as_json:
        click.echo(json.dumps({"dir": str(cluster.dir), "healthy": ok, "components": status,
                               "kubeconfig": str(cluster.kubeconfig), "topology": cluster.state().get("topology"),
                               "podNetwork": str(cluster.pod_network)}, indent=2))
    else:
        for name, s in status.items():
            state = "healthy" if s["healthy"] else ("unhealthy" if s["pid"] else "stopped")
            click.echo(f"{name:<24} {state:<10} pid={s['pid'] or '-'}")
        if (cluster.dir / "ports.json").exists():
            click.echo(f"kubeconfig: {cluster.kubeconfig}")
            click.echo(f"prometheus: {cluster.prometheus_url}")
            click.echo(f"topology:   {cluster.state().get('topology')}  pod network: {cluster.pod_network}")
    sys.exit(0 if ok else 1)
