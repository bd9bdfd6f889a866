"""The container images: every target runs as a fixed non-root user on a pinned base."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    result: dict[str, list[str]] = {}
    current: list[str] = []
    for line in DOCKERFILE.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = [line]
            result[match.group(2)] = current
        else:
            current.append(line)
    return result


def effective_user(stage: str) -> str | None:
    """The last USER of a stage, following `FROM <earlier stage>` chains."""
    instructions = stages()[stage]
    users = [i.split(None, 1)[1] for i in instructions if i.upper().startswith("USER ")]
    if users:
        return users[-1]
    parent = instructions[0].split()[1]
    return effective_user(parent) if parent in stages() else None


def test_base_image_is_pinned_to_a_patch_version() -> None:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, "the base image is set once, as ARG PYTHON_IMAGE"
    image = match.group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image


@pytest.mark.parametrize("target", ["controller", "router", "enginesim"])
def test_target_runs_as_a_numeric_non_root_user(target: str) -> None:
    user = effective_user(target)
    assert user is not None and re.fullmatch(r"\d+:\d+", user), user
    assert not user.startswith("0:")


@pytest.mark.parametrize("target", ["controller", "router", "enginesim"])
def test_target_has_an_entrypoint(target: str) -> None:
    chain = []
    stage: str | None = target
    while stage in stages():
        chain += stages()[stage]
        stage = stages()[stage][0].split()[1]
    assert any(i.upper().startswith("ENTRYPOINT") for i in chain)


def test_chart_uses_the_uid_the_image_creates() -> None:
    values = (ROOT / "deploy" / "helm" / "caldera" / "values.yaml").read_text()
    assert "runAsUser: 65532" in values and "--uid 65532" in DOCKERFILE
