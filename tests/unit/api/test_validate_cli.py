"""`caldera validate -f FILE...` prints `<file>: <kind>/<name>: <path>: <reason>` and exits 1 on errors."""

import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from caldera.validate import validate_command

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"

BAD_MODELSERVING = """\
apiVersion: workload.serving.volcano.sh/v1alpha1
kind: ModelServing
metadata:
  name: bad
spec:
  template:
    roles:
    - name: prefill-and-more
      workerReplicas: 1
      entryTemplate:
        spec:
          containers:
          - name: engine
            image: caldera/enginesim:latest
---
apiVersion: networking.serving.volcano.sh/v1alpha1
kind: ModelRoute
metadata:
  name: canary
spec:
  modelName: m
  rules:
  - targetModels:
    - modelServerName: a
      weight: 120
---
apiVersion: v1
kind: Namespace
metadata:
  name: ignored
"""


def test_every_example_validates() -> None:
    result = CliRunner().invoke(validate_command, ["-f", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert f"{EXAMPLES}/modelserving-network-topology.yaml: ModelServing/sample: valid" in result.output


def test_errors_are_printed_with_file_kind_name_path_and_reason(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_MODELSERVING)
    result = CliRunner().invoke(validate_command, ["-f", str(manifest)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{manifest}: ModelServing/bad: spec.template.roles[0].name: String should have at most 12 characters" in lines
    assert (
        f"{manifest}: ModelRoute/canary: spec.rules[0].targetModels[0].weight: "
        "Input should be less than or equal to 100" in lines
    )


def test_documents_of_other_kinds_are_skipped(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_MODELSERVING)
    result = CliRunner().invoke(validate_command, ["-f", str(manifest)])
    assert "Namespace" not in result.output


def test_all_errors_of_one_document_are_reported(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_MODELSERVING.split("---")[0].replace("prefill-and-more", "Prefill"))
    result = CliRunner().invoke(validate_command, ["-q", "-f", str(manifest)])
    paths = [line.split(": ")[2] for line in result.output.splitlines()]
    assert paths == ["metadata.name", "spec.template.roles[0].name", "spec.template.roles[0].workerTemplate"]


def test_yaml_syntax_errors_fail(tmp_path: Path) -> None:
    manifest = tmp_path / "broken.yaml"
    manifest.write_text("kind: [ModelServing\n")
    result = CliRunner().invoke(validate_command, ["-f", str(manifest)])
    assert result.exit_code == 1
    assert f"{manifest}: <no kind>/<document 0>: <yaml>:" in result.output


def test_a_missing_file_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(validate_command, ["-f", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 1


def test_stdin_is_read_for_dash() -> None:
    result = CliRunner().invoke(validate_command, ["-f", "-"], input=(EXAMPLES / "modelroute-canary.yaml").read_text())
    assert result.exit_code == 0
    assert "-: ModelRoute/qwen2-5-7b: valid" in result.output


def test_the_installed_console_script_validates_the_examples() -> None:
    caldera = Path(sys.executable).parent / "caldera"
    result = subprocess.run(
        [str(caldera), "validate", "-f", str(EXAMPLES)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AutoscalingPolicyBinding/optimizer-binding: valid" in result.stdout


def test_the_console_script_exits_1_on_an_invalid_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_MODELSERVING)
    caldera = Path(sys.executable).parent / "caldera"
    result = subprocess.run(
        [str(caldera), "validate", "-f", str(manifest)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert "ModelRoute/canary: spec.rules[0].targetModels[0].weight" in result.stdout


def test_the_items_of_a_list_are_validated(tmp_path: Path) -> None:
    route = yaml.safe_load((EXAMPLES / "modelroute-canary.yaml").read_text())
    broken = yaml.safe_load((EXAMPLES / "modelroute-lora.yaml").read_text())
    broken["spec"]["rules"][0]["targetModels"][0]["weight"] = 101
    manifest = tmp_path / "list.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [route, broken]}))
    result = CliRunner().invoke(validate_command, ["-f", str(manifest)])
    assert result.exit_code == 1
    assert f"{manifest}: ModelRoute/qwen2-5-7b: valid" in result.output
    assert f"{manifest}: ModelRoute/qwen-lora: spec.rules[0].targetModels[0].weight:" in result.output
