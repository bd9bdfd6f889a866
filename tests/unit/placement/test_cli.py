"""`caldera plan`: a dry run over a topology file."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from caldera.cli import cli

REPO = Path(__file__).resolve().parents[3]
SEED = REPO / "examples" / "modelserving-network-topology.yaml"


def test_plan_prints_every_pod_of_the_seed_with_its_node_and_the_free_capacity() -> None:
    result = CliRunner().invoke(cli, ["plan", "-f", str(SEED), "--topology", "small"])
    assert result.exit_code == 0, result.output
    for pod in ("sample-0-prefill-0-0", "sample-0-prefill-1-1", "sample-0-decode-0-1"):
        assert pod in result.output
    assert "Free capacity per domain" in result.output


def test_plan_json_keeps_each_prefill_replica_inside_one_tier_1_hypernode() -> None:
    result = CliRunner().invoke(cli, ["plan", "-f", str(SEED), "--topology", "small", "-o", "json"])
    roles = json.loads(result.output)["gangs"]["default/sample-0"]["roles"]
    assert {name: r["tier"] for name, r in roles.items()} == {"prefill-0": 1, "prefill-1": 1, "decode-0": 1}


def test_an_unplaceable_model_serving_exits_2_and_names_the_constraint(tmp_path: Path) -> None:
    manifest = yaml.safe_load(SEED.read_text())
    manifest["spec"]["template"]["roles"][0]["workerReplicas"] = 8  # 9 pods x 4 GPUs in one tier-1 domain
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = CliRunner().invoke(cli, ["plan", "-f", str(path), "--topology", "small"])
    assert result.exit_code == 2
    assert "rolePolicy" in result.output


def test_plan_refuses_both_a_topology_file_and_a_kubeconfig() -> None:
    result = CliRunner().invoke(cli, ["plan", "-f", str(SEED), "--topology", "small", "--kubeconfig", "x"])
    assert result.exit_code != 0 and "either" in result.output
