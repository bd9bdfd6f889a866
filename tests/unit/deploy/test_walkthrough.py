"""`caldera up` / `caldera down`: their commands and the quickstart they apply (the end-to-end
run is tests/integration/deploy/test_walkthrough.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from caldera import walkthrough
from caldera.cli import cli


def test_up_offers_topology_detach_and_dir() -> None:
    result = CliRunner().invoke(cli, ["up", "--help"])
    assert result.exit_code == 0
    for option in ("--topology", "--detach", "--dir"):
        assert option in result.output


def test_down_is_a_command() -> None:
    assert CliRunner().invoke(cli, ["down", "--help"]).exit_code == 0


def test_quickstart_starts_three_engine_pods() -> None:
    # qwen3-8b: prefill + decode entry pods; qwen3-8b-canary: one aggregated pod.
    assert walkthrough.expected_pods() == 3


def test_quickstart_serves_the_model_the_walkthrough_asks_for() -> None:
    routes = [o for o in walkthrough.quickstart_objects() if o["kind"] == "ModelRoute"]
    assert [r["spec"]["modelName"] for r in routes] == [walkthrough.MODEL]


def test_ports_are_allocated_once_per_directory(tmp_path: Path) -> None:
    directory = tmp_path
    first = walkthrough.Ports.load_or_allocate(directory)
    assert walkthrough.Ports.load_or_allocate(directory) == first
    assert len({first.controller_metrics, first.controller_health, first.webhook, first.router}) == 4
