"""The shipped manifests (examples/quickstart, examples/queues) are valid for Caldera's API
models, and say what the docs say they do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from autoscaler.api import AutoscalingPolicy, AutoscalingPolicyBinding
from modelserving.api import ModelServing
from router.api import ModelRoute, ModelServer

ROOT = Path(__file__).resolve().parents[3]
MODELS: dict[str, type[BaseModel]] = {
    "ModelServing": ModelServing, "ModelRoute": ModelRoute, "ModelServer": ModelServer,
    "AutoscalingPolicy": AutoscalingPolicy, "AutoscalingPolicyBinding": AutoscalingPolicyBinding,
}


def documents(folder: str) -> list[dict[str, Any]]:
    return [doc for path in sorted((ROOT / "examples" / folder).glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(folder: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents(folder) if doc["kind"] == kind]


@pytest.mark.parametrize("folder", ["quickstart", "queues"])
def test_every_caldera_object_validates_against_its_model(folder: str) -> None:
    for doc in documents(folder):
        if doc["kind"] in MODELS:
            MODELS[doc["kind"]].model_validate(doc)


def test_quickstart_has_every_kind_the_walkthrough_shows() -> None:
    assert set(MODELS) <= {doc["kind"] for doc in documents("quickstart")}


def test_quickstart_model_has_prefill_and_decode_roles() -> None:
    serving = next(d for d in of_kind("quickstart", "ModelServing") if d["metadata"]["name"] == "qwen3-8b")
    assert [role["name"] for role in serving["spec"]["template"]["roles"]] == ["prefill", "decode"]


def test_quickstart_engines_are_simulated() -> None:
    for serving in of_kind("quickstart", "ModelServing"):
        for role in serving["spec"]["template"]["roles"]:
            for container in role["entryTemplate"]["spec"]["containers"]:
                assert container["image"] == "caldera/enginesim:latest"
                assert container["args"][:2] == ["--model", "Qwen/Qwen3-8B"]


def test_quickstart_route_is_a_90_10_canary_over_existing_servers() -> None:
    (route,) = of_kind("quickstart", "ModelRoute")
    servers = {s["metadata"]["name"] for s in of_kind("quickstart", "ModelServer")}
    targets = {t["modelServerName"]: t["weight"] for t in route["spec"]["rules"][0]["targetModels"]}
    assert targets == {"qwen3-8b": 90, "qwen3-8b-canary": 10}
    assert set(targets) <= servers


def test_quickstart_binding_targets_the_quickstart_model_and_policy() -> None:
    (binding,) = of_kind("quickstart", "AutoscalingPolicyBinding")
    policies = {p["metadata"]["name"] for p in of_kind("quickstart", "AutoscalingPolicy")}
    servings = {s["metadata"]["name"] for s in of_kind("quickstart", "ModelServing")}
    assert binding["spec"]["policyRef"]["name"] in policies
    assert binding["spec"]["homogeneousTarget"]["target"]["targetRef"]["name"] in servings


def test_every_team_model_names_a_queue_that_exists() -> None:
    queues = {q["metadata"]["name"] for q in of_kind("queues", "Queue")}
    for serving in of_kind("queues", "ModelServing"):
        assert serving["metadata"]["annotations"]["scheduling.volcano.sh/queue-name"] in queues


def test_team_b_asks_for_more_gpus_than_its_queue_holds() -> None:
    capability = {q["metadata"]["name"]: int(q["spec"]["capability"]["nvidia.com/gpu"])
                  for q in of_kind("queues", "Queue")}
    (serving,) = [s for s in of_kind("queues", "ModelServing") if s["metadata"]["namespace"] == "team-b"]
    spec = serving["spec"]
    per_group = sum(role["replicas"] * (
        int(role["entryTemplate"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        + role["workerReplicas"] * int(role["workerTemplate"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]))
        for role in spec["template"]["roles"])
    assert per_group <= capability["team-b"] < per_group * spec["replicas"]


def test_caldera_validate_accepts_every_example() -> None:
    from click.testing import CliRunner

    from caldera.cli import cli

    result = CliRunner().invoke(cli, ["validate", "-f", str(ROOT / "examples" / "quickstart"),
                                      "-f", str(ROOT / "examples" / "queues")])
    assert result.exit_code == 0, result.output
