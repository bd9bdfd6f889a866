from __future__ import annotations

from pathlib import Path

import yaml

from caldera.localcluster import prometheus


def test_pod_discovery_uses_the_cluster_kubeconfig() -> None:
    config = yaml.safe_load(prometheus.render(Path("/c/kubeconfig"), "127.0.0.1:1"))
    [sd] = config["scrape_configs"][0]["kubernetes_sd_configs"]
    assert sd == {"role": "pod", "kubeconfig_file": "/c/kubeconfig"}


def test_address_is_pod_ip_and_annotated_port() -> None:
    config = yaml.safe_load(prometheus.render(Path("/k"), "127.0.0.1:1"))
    rule = next(r for r in config["scrape_configs"][0]["relabel_configs"] if r.get("target_label") == "__address__")
    assert rule["replacement"] == "${1}:${2}"


def test_only_annotated_pods_are_kept() -> None:
    config = yaml.safe_load(prometheus.render(Path("/k"), "127.0.0.1:1"))
    first = config["scrape_configs"][0]["relabel_configs"][0]
    assert (first["action"], first["regex"]) == ("keep", "true")
