"""The kind path (deploy/kind/) is not run here (no Docker engine), so its files are checked
for what can be checked without Docker: they parse, agree with each other, and the chart
renders with its values."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
KIND = ROOT / "deploy" / "kind"


def test_scripts_are_valid_bash() -> None:
    for script in ("up.sh", "down.sh"):
        result = subprocess.run(["bash", "-n", str(KIND / script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


def test_every_hypernode_leaf_selects_a_label_the_kind_workers_carry() -> None:
    workers = [n for n in yaml.safe_load((KIND / "kind-config.yaml").read_text())["nodes"] if n["role"] == "worker"]
    labels = {(k, v) for node in workers for k, v in node.get("labels", {}).items()}
    leaves = [h for h in yaml.safe_load_all((KIND / "hypernodes.yaml").read_text()) if h["spec"]["tier"] == 1]
    assert leaves
    for leaf in leaves:
        selector = leaf["spec"]["members"][0]["selector"]["labelMatch"]["matchLabels"]
        assert set(selector.items()) <= labels, leaf["metadata"]["name"]


def test_spine_joins_every_leaf() -> None:
    docs = list(yaml.safe_load_all((KIND / "hypernodes.yaml").read_text()))
    leaves = {h["metadata"]["name"] for h in docs if h["spec"]["tier"] == 1}
    (spine,) = [h for h in docs if h["spec"]["tier"] == 2]
    assert {m["selector"]["exactMatch"]["name"] for m in spine["spec"]["members"]} == leaves


def test_volcano_scheduler_enables_gang_capacity_and_topology_plugins() -> None:
    config = yaml.safe_load(yaml.safe_load((KIND / "volcano-values.yaml").read_text())["custom"][
        "scheduler_config_override"])
    plugins = {p["name"] for tier in config["tiers"] for p in tier["plugins"]}
    assert {"gang", "capacity", "predicates", "binpack", "network-topology-aware"} <= plugins


def test_chart_with_the_kind_values_runs_the_images_up_sh_builds(render: Callable[..., list[dict[str, Any]]]) -> None:
    values = yaml.safe_load((KIND / "caldera-values.yaml").read_text())
    # up.sh: --set image.repository=caldera/caldera --set image.tag=$TAG, images caldera/caldera-<target>:$TAG
    values["image"] |= {"repository": "caldera/caldera", "tag": "0.1.0"}
    objects = render(values)
    images = {c["image"] for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {"caldera/caldera-controller:0.1.0", "caldera/caldera-router:0.1.0"}
    script = (KIND / "up.sh").read_text()
    assert '-t "caldera/caldera-$target:$TAG"' in script and "--set image.repository=caldera/caldera" in script
