"""Build the cluster's Go binaries from pinned modules and cache them outside the repository.

Each component lands in `<cache>/bin/<component>-<version>/`. A component whose binaries
are all present is not rebuilt, so `build_all` is cheap once a machine has built them.
Wrapper modules (tiny `main.go` + `go.mod` written here) live in `<cache>/build/`, never in
the repository. Builds are serialised by a file lock so parallel test sessions share them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from caldera.localcluster import versions

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """A build step failed; the message holds the command and the tail of its output."""


def cache_root() -> Path:
    return Path(os.environ.get("CALDERA_CACHE", Path.home() / ".cache" / "caldera"))


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    binaries: tuple[str, ...]

    @property
    def bin_dir(self) -> Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}"

    @property
    def work_dir(self) -> Path:
        return cache_root() / "build" / f"{self.name}-{self.version}"

    @property
    def log_file(self) -> Path:
        return cache_root() / "logs" / f"build-{self.name}-{self.version}.log"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def is_built(self) -> bool:
        return all(os.access(self.binary(b), os.X_OK) for b in self.binaries)


ETCD = Component("etcd", versions.ETCD, ("etcd",))
KUBERNETES = Component("kubernetes", versions.KUBERNETES, ("kube-apiserver", "kube-controller-manager"))
VOLCANO = Component("volcano", versions.VOLCANO, ("vc-scheduler", "vc-controller-manager"))
KWOK = Component("kwok", versions.KWOK, ("kwok",))
COMPONENTS: tuple[Component, ...] = (ETCD, KWOK, KUBERNETES, VOLCANO)


def binary(name: str) -> Path:
    """The cached path of one binary, by its name (e.g. `kube-apiserver`)."""
    for component in COMPONENTS:
        if name in component.binaries:
            return component.binary(name)
    raise KeyError(f"unknown binary {name!r}")


def missing_components() -> list[Component]:
    return [c for c in COMPONENTS if not c.is_built()]


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-trimpath -buildvcs=false"
    return env


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go is None:
        raise BuildError("the `go` tool is not on PATH; Go >= 1.24 is needed to build the local cluster")
    return go


def _run(cmd: list[str], cwd: Path, log_file: Path, env: dict[str, str] | None = None) -> str:
    """Run one build step, appending its output to the component's log."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as out:
        out.write(f"\n$ (cd {cwd} && {' '.join(cmd)})\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env or go_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
        out.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise BuildError(f"command failed (exit {proc.returncode}) in {cwd}:\n  {' '.join(cmd)}\n{tail}\n"
                         f"(full log: {log_file})")
    return proc.stdout


def module_dir(module: str, version: str, log_file: Path) -> Path:
    """Download a module through the module proxy; return its read-only directory."""
    out = _run([_go(), "mod", "download", "-json", f"{module}@{version}"], cache_root(), log_file)
    info = json.loads(out[out.index("{"):])
    if info.get("Error"):
        raise BuildError(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _component_main(import_path: str, constructor: str) -> str:
    return (
        "package main\n\n"
        "import (\n"
        '\t"os"\n'
        '\t_ "time/tzdata"\n\n'
        '\t"k8s.io/component-base/cli"\n'
        '\t_ "k8s.io/component-base/logs/json/register"\n'
        '\t_ "k8s.io/component-base/metrics/prometheus/clientgo"\n'
        '\t_ "k8s.io/component-base/metrics/prometheus/version"\n'
        f'\t"{import_path}"\n'
        ")\n\n"
        f"func main() {{ os.Exit(cli.Run(app.{constructor}())) }}\n"
    )


def _build_etcd(c: Component, out_dir: Path) -> None:
    w = c.work_dir
    _write(w / "main.go", 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
                          "func main() { etcdmain.Main(os.Args) }\n")
    _write(w / "go.mod", f"module caldera.local/etcd\n\ngo 1.24\n\nrequire {versions.ETCD_MODULE} {c.version}\n")
    _run([_go(), "mod", "tidy"], w, c.log_file)
    _run([_go(), "build", "-o", str(out_dir / "etcd"), "."], w, c.log_file)


def kubernetes_replaces(kubernetes_dir: Path, log_file: Path) -> list[str]:
    """The staging modules that k8s.io/kubernetes replaces with ./staging paths."""
    out = _run([_go(), "mod", "edit", "-json"], kubernetes_dir, log_file)
    mod = json.loads(out)
    return sorted(r["Old"]["Path"] for r in mod.get("Replace") or [] if r["New"]["Path"].startswith("./staging/"))


def _build_kubernetes(c: Component, out_dir: Path) -> None:
    w = c.work_dir
    src = module_dir(versions.KUBERNETES_MODULE, c.version, c.log_file)
    staging = versions.staging_version(c.version)
    replaces = "".join(f"\t{m} => {m} {staging}\n" for m in kubernetes_replaces(src, c.log_file))
    _write(w / "go.mod", f"module caldera.local/kubernetes\n\ngo 1.24.0\n\n"
                         f"require {versions.KUBERNETES_MODULE} {c.version}\n\nreplace (\n{replaces})\n")
    _write(w / "kube-apiserver" / "main.go",
           _component_main("k8s.io/kubernetes/cmd/kube-apiserver/app", "NewAPIServerCommand"))
    _write(w / "kube-controller-manager" / "main.go",
           _component_main("k8s.io/kubernetes/cmd/kube-controller-manager/app", "NewControllerManagerCommand"))
    _run([_go(), "mod", "tidy"], w, c.log_file)
    # One invocation for both commands so the shared packages compile once.
    _run([_go(), "build", "-o", str(out_dir) + "/", "./kube-apiserver", "./kube-controller-manager"], w, c.log_file)


def _build_volcano(c: Component, out_dir: Path) -> None:
    w = c.work_dir
    if not (w / "go.mod").exists():
        src = module_dir(versions.VOLCANO_MODULE, c.version, c.log_file)
        shutil.rmtree(w, ignore_errors=True)
        shutil.copytree(src, w)
        for root, dirs, files in os.walk(w):
            for name in dirs + files:
                Path(root, name).chmod(0o755 if name in dirs else 0o644)
        w.chmod(0o755)
    # The module zip lacks the apis staging dir its replace points at; use the published module.
    _run([_go(), "mod", "edit", "-replace",
          f"{versions.VOLCANO_APIS_MODULE}={versions.VOLCANO_APIS_MODULE}@{versions.VOLCANO_APIS}"], w, c.log_file)
    _run([_go(), "build", "-mod=mod", "-o", str(out_dir) + "/", "./cmd/scheduler", "./cmd/controller-manager"],
         w, c.log_file)
    os.replace(out_dir / "scheduler", out_dir / "vc-scheduler")
    os.replace(out_dir / "controller-manager", out_dir / "vc-controller-manager")


def _build_kwok(c: Component, out_dir: Path) -> None:
    env = go_env()
    env["GOBIN"] = str(out_dir)
    c.work_dir.mkdir(parents=True, exist_ok=True)
    _run([_go(), "install", f"{versions.KWOK_MODULE}/cmd/kwok@{c.version}"], c.work_dir, c.log_file, env)


RECIPES: dict[str, Callable[[Component, Path], None]] = {
    "etcd": _build_etcd,
    "kubernetes": _build_kubernetes,
    "volcano": _build_volcano,
    "kwok": _build_kwok,
}


@contextmanager
def _build_lock() -> Iterator[None]:
    path = cache_root() / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_component(c: Component, progress: Progress) -> float:
    """Build one component into its cache directory; return the seconds it took (0 if cached)."""
    if c.is_built():
        progress(f"{c.name} {c.version}: cached in {c.bin_dir}")
        return 0.0
    progress(f"{c.name} {c.version}: building (log: {c.log_file})")
    start = time.monotonic()
    c.bin_dir.mkdir(parents=True, exist_ok=True)
    RECIPES[c.name](c, c.bin_dir)
    if not c.is_built():
        raise BuildError(f"{c.name} {c.version}: build finished but {c.binaries} are not all in {c.bin_dir}")
    took = time.monotonic() - start
    progress(f"{c.name} {c.version}: built in {took:.0f}s")
    return took


def build_all(progress: Progress = log.info) -> dict[str, float]:
    """Build every missing component (cached ones are skipped); return seconds per component."""
    with _build_lock():
        return {c.name: build_component(c, progress) for c in COMPONENTS}
