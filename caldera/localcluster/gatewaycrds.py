"""The Gateway API and Gateway API Inference Extension CRDs, fetched from their Go modules.

The router's Gateway mode watches `Gateway`/`HTTPRoute` (gateway.networking.k8s.io/v1) and
`InferencePool` (inference.networking.k8s.io/v1). Their real CRD YAMLs ship inside the
upstream Go modules; `crd_files` downloads the pinned module versions through the Go module
proxy (`go mod download -json`) and copies the CRDs into
`<cache>/crds/<module>-<version>/`, outside the repository. `install` applies them to a
cluster and waits until the API server serves them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.localcluster import wait
from caldera.localcluster.build import BuildError, Progress, cache_root, module_dir


@dataclass(frozen=True)
class CRDModule:
    module: str
    version: str
    files: tuple[str, ...]  # paths inside the module

    @property
    def cache_dir(self) -> Path:
        return cache_root() / "crds" / f"{self.module.replace('/', '_')}-{self.version}"

    @property
    def log_file(self) -> Path:
        return cache_root() / "logs" / f"crds-{self.module.replace('/', '_')}-{self.version}.log"


# Gateway API v1.4.1 (standard channel): Gateway, GatewayClass and HTTPRoute at v1.
GATEWAY_API = CRDModule("sigs.k8s.io/gateway-api", "v1.4.1", (
    "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
    "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
    "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
))
# GIE v1.1.0: InferencePool at inference.networking.k8s.io/v1.
INFERENCE_EXTENSION = CRDModule("sigs.k8s.io/gateway-api-inference-extension", "v1.1.0", (
    "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
))
MODULES: tuple[CRDModule, ...] = (GATEWAY_API, INFERENCE_EXTENSION)


def crd_files(modules: Iterable[CRDModule] = MODULES, progress: Progress | None = None) -> list[Path]:
    """Local paths of the CRD YAMLs, downloading each module once (cached across sessions)."""
    paths: list[Path] = []
    for mod in modules:
        targets = [mod.cache_dir / Path(f).name for f in mod.files]
        if not all(t.is_file() for t in targets):
            if progress is not None:
                progress(f"fetching CRDs from {mod.module}@{mod.version} (Go module proxy)")
            src = module_dir(mod.module, mod.version, mod.log_file)
            mod.cache_dir.mkdir(parents=True, exist_ok=True)
            for rel, target in zip(mod.files, targets, strict=True):
                source = src / rel
                if not source.is_file():
                    raise BuildError(f"{mod.module}@{mod.version}: {rel} is not in the module")
                tmp = target.with_suffix(f".tmp{os.getpid()}")
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)  # atomic: parallel sessions never see half a file
        paths.extend(targets)
    return paths


def load_crds(paths: Iterable[Path]) -> list[dict[str, object]]:
    docs: list[dict[str, object]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs


def install(api: client.ApiClient, modules: Iterable[CRDModule] = MODULES, timeout_s: float = 60.0,
            progress: Progress | None = None) -> list[str]:
    """Create the CRDs (an existing CRD is left as it is) and wait until each is Established."""
    ext = client.ApiextensionsV1Api(api)
    names: list[str] = []
    for crd in load_crds(crd_files(modules, progress)):
        meta = crd.get("metadata")
        assert isinstance(meta, dict)
        name = str(meta["name"])
        names.append(name)
        try:
            ext.create_custom_resource_definition(crd)  # type: ignore[arg-type]  # a dict body is accepted
        except ApiException as exc:
            if exc.status != 409:
                raise
    pending = set(names)

    def established() -> bool:
        for name in sorted(pending):
            status = ext.read_custom_resource_definition(name).status
            conditions = (status.conditions if status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(name)
        return not pending

    wait.until(established, timeout_s, f"CRDs Established: {sorted(names)}")
    return names
