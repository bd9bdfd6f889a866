"""Kubernetes I/O of `cluster up`: apply CRDs and objects, create nodes, read readiness."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from caldera.localcluster import build, versions

# The CRDs are megabytes of YAML: libyaml parses them four times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FIELD_MANAGER = "caldera-cluster"
APPLY = "application/apply-patch+yaml"
HASH_ANNOTATION = "caldera.dev/applied-hash"


def _gomodcache() -> Path:
    out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, env=build.go_env())
    return Path(out.stdout.strip())


def volcano_crd_files() -> list[Path]:
    """Volcano's CRDs, read from the Go module cache (downloaded if missing), never from the repo."""
    root = _gomodcache() / f"{versions.VOLCANO_MODULE}@{versions.VOLCANO}"
    if not root.is_dir():
        root = build.module_dir(versions.VOLCANO_MODULE, versions.VOLCANO, build.VOLCANO.log_file)
    files = sorted((root / "config" / "crd" / "volcano" / "bases").glob("*.yaml"))
    files += sorted((root / "config" / "crd" / "jobflow" / "bases").glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no Volcano CRDs under {root}/config/crd")
    return files


class Client:
    def __init__(self, kubeconfig: Path) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self._dyn: dynamic.DynamicClient | None = None

    @property
    def dyn(self) -> dynamic.DynamicClient:
        if self._dyn is None:
            self._dyn = dynamic.DynamicClient(self.api)
        return self._dyn

    def apply_objects(self, objects: list[dict[str, Any]]) -> list[str]:
        """Server-side apply each object; return "<kind>/<name>" of each."""
        done = []
        for obj in objects:
            name = obj["metadata"]["name"]
            # Typed calls for the kinds `up` applies in bulk: discovery would cost seconds.
            if obj["kind"] == "CustomResourceDefinition":
                self.ext.patch_custom_resource_definition(name, obj, field_manager=FIELD_MANAGER, force=True,
                                                          _content_type=APPLY)
            elif obj["kind"] == "HyperNode":
                self.custom.patch_cluster_custom_object("topology.volcano.sh", "v1alpha1", "hypernodes", name, obj,
                                                        field_manager=FIELD_MANAGER, force=True,
                                                        _content_type=APPLY)
            else:
                resource = self.dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                self.dyn.server_side_apply(resource, body=obj, field_manager=FIELD_MANAGER, force_conflicts=True)
            done.append(f"{obj['kind']}/{name}")
        if any(obj["kind"] == "CustomResourceDefinition" for obj in objects):
            self._dyn = None  # new kinds: rediscover
        return done

    def _applied_crd_hashes(self) -> dict[str, str]:
        response = self.ext.list_custom_resource_definition(_preload_content=False)
        items = json.loads(response.data).get("items") or []  # type: ignore[attr-defined]
        return {i["metadata"]["name"]: (i["metadata"].get("annotations") or {}).get(HASH_ANNOTATION, "")
                for i in items}

    def apply_files(self, files: list[Path]) -> list[str]:
        """Apply every document of the files; return the names of the CRDs among them.

        CRDs carry a hash of what was applied; unchanged ones are not re-applied (a
        server-side apply of a large CRD costs the API server most of a second)."""
        objects = [doc for f in files for doc in yaml.load_all(f.read_text(), Loader=_LOADER) if isinstance(doc, dict)]
        crds = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
        applied = self._applied_crd_hashes()
        changed = []
        for crd in crds:
            digest = hashlib.sha256(json.dumps(crd, sort_keys=True).encode()).hexdigest()[:16]
            crd.setdefault("metadata", {}).setdefault("annotations", {})[HASH_ANNOTATION] = digest
            if applied.get(crd["metadata"]["name"]) != digest:
                changed.append(crd)
        self.apply_objects(changed)
        if len(crds) != len(objects):
            self.wait_crds_established([c["metadata"]["name"] for c in crds], timeout=60)
            self.apply_objects([o for o in objects if o.get("kind") != "CustomResourceDefinition"])
        return [c["metadata"]["name"] for c in crds]

    def wait_crds_established(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                crd = self.ext.read_custom_resource_definition(name)
                conditions = crd.status.conditions or [] if crd.status else []
                if any(c.type == "Established" and c.status == "True" for c in conditions):
                    pending.discard(name)
            if pending:
                time.sleep(0.2)
        if pending:
            raise TimeoutError(f"CRDs not established after {timeout:.0f}s: {sorted(pending)}")

    def create_nodes(self, nodes: list[dict[str, Any]]) -> int:
        """Create the nodes that do not exist yet (status included, which apply would drop)."""
        existing = {n["metadata"]["name"] for n in self._nodes()}
        created = 0
        for node in nodes:
            if node["metadata"]["name"] in existing:
                continue
            try:
                self.core.create_node(node)  # type: ignore[arg-type]
                created += 1
            except ApiException as err:
                if err.status != 409:
                    raise
        return created

    def ready_nodes(self) -> int:
        return sum(1 for n in self._nodes()
                   if any(c.get("type") == "Ready" and c.get("status") == "True"
                          for c in (n.get("status") or {}).get("conditions") or []))

    def _nodes(self) -> list[dict[str, Any]]:
        response = self.core.list_node(_preload_content=False)
        return list(json.loads(response.data).get("items") or [])  # type: ignore[attr-defined]

    def queue_state(self, name: str) -> str | None:
        try:
            queue = self.custom.get_cluster_custom_object("scheduling.volcano.sh", "v1beta1", "queues", name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return str(json.loads(json.dumps(queue)).get("status", {}).get("state")) or None
