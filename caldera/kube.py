"""Shared Kubernetes client set-up: one place that knows how to find a kubeconfig."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config


def load_config(kubeconfig: str | os.PathLike[str] | None = None) -> None:
    """Load, in order: the explicit file, $KUBECONFIG, in-cluster, ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        config.load_kube_config(config_file=str(Path(path)))
        return
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def api_client(kubeconfig: str | os.PathLike[str] | None = None) -> client.ApiClient:
    load_config(kubeconfig)
    return client.ApiClient()
