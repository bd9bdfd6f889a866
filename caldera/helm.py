"""Helm, built from its Go module and cached, and the Caldera chart rendered with it.

No release binaries can be downloaded here, so `helm` is built once with
`go install helm.sh/helm/v3/cmd/helm@<version>` (helm's go.mod has no replace directives)
into `~/.cache/caldera/bin/helm-<version>/` and reused afterwards. A failed build raises
`HelmBuildError` with the command and its output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

HELM_VERSION = "v3.19.5"
# The Kubernetes minor version helm v3.19 was built against (its k8s.io modules are v0.34):
# helm's own Makefile stamps it and the version in with -ldflags; `go install` must too, or
# `helm version` says v3.19 and charts are checked against Kubernetes v1.20.
HELM_KUBE_VERSION = ("1", "34")
REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "caldera"


class HelmBuildError(RuntimeError):
    """`go install` of helm failed; the message carries the command and its output."""


def cache_dir() -> Path:
    base = Path(os.environ.get("CALDERA_CACHE_DIR", Path.home() / ".cache" / "caldera"))
    return base / "bin" / f"helm-{HELM_VERSION}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build at a time across processes (parallel pytest runs share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_helm() -> Path:
    """The path of a working helm binary, building it from the Go module on first use."""
    target = cache_dir()
    binary = target / "helm"
    with _locked(target.parent / f".helm-{HELM_VERSION}.lock"):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
        go = shutil.which("go")
        if go is None:
            raise HelmBuildError("building helm needs the Go toolchain: `go` is not on PATH (install Go >= 1.24)")
        # Build into a scratch directory and rename, so a half-written binary is never cached.
        scratch = Path(tempfile.mkdtemp(prefix="helm-build-", dir=target.parent))
        ldflags = " ".join([
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={HELM_KUBE_VERSION[0]}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={HELM_KUBE_VERSION[1]}",
        ])
        command = [go, "install", "-ldflags", ldflags, f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"]
        env = {**os.environ, "GOBIN": str(scratch), "CGO_ENABLED": "0"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not (scratch / "helm").is_file():
            shutil.rmtree(scratch, ignore_errors=True)
            raise HelmBuildError(
                f"`{' '.join(command)}` failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        target.mkdir(parents=True, exist_ok=True)
        (scratch / "helm").replace(binary)
        shutil.rmtree(scratch, ignore_errors=True)
        return binary


def template(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "caldera",
    namespace: str = "caldera-system",
    chart: Path = CHART_DIR,
    include_crds: bool = True,
) -> list[dict[str, Any]]:
    """`helm template` of the chart with `values`, parsed into a list of objects."""
    helm = ensure_helm()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(dict(values or {}), handle)
        values_file = handle.name
    try:
        command = [str(helm), "template", release, str(chart), "--namespace", namespace, "-f", values_file]
        if include_crds:
            command.append("--include-crds")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        os.unlink(values_file)
    if result.returncode != 0:
        raise RuntimeError(f"`helm template` failed (exit {result.returncode}):\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
