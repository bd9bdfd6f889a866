from __future__ import annotations

from pathlib import Path

import pytest

from caldera.localcluster import build, versions


def test_staging_modules_follow_the_kubernetes_minor() -> None:
    assert versions.staging_version("v1.34.1") == "v0.34.1"


def test_staging_version_rejects_non_v1_versions() -> None:
    with pytest.raises(ValueError, match=r"v1\.N\.M"):
        versions.staging_version("0.34.1")


def test_binaries_are_cached_under_component_and_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALDERA_CACHE", str(tmp_path))
    assert build.binary("kube-apiserver") == tmp_path / "bin" / f"kubernetes-{versions.KUBERNETES}" / "kube-apiserver"


def test_component_is_built_only_when_every_binary_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALDERA_CACHE", str(tmp_path))
    build.KUBERNETES.bin_dir.mkdir(parents=True)
    apiserver = build.KUBERNETES.binary("kube-apiserver")
    apiserver.write_text("")
    apiserver.chmod(0o755)
    assert not build.KUBERNETES.is_built()


def test_cached_component_is_not_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALDERA_CACHE", str(tmp_path))
    build.KWOK.bin_dir.mkdir(parents=True)
    kwok = build.KWOK.binary("kwok")
    kwok.write_text("")
    kwok.chmod(0o755)
    messages: list[str] = []
    assert build.build_component(build.KWOK, messages.append) == 0.0
    assert "cached" in messages[0]


def test_wrapper_main_calls_the_upstream_command_constructor() -> None:
    source = build._component_main("k8s.io/kubernetes/cmd/kube-apiserver/app", "NewAPIServerCommand")
    assert "cli.Run(app.NewAPIServerCommand())" in source
