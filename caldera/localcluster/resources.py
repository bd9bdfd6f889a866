"""Kubernetes I/O of `cluster up`: apply CRDs and objects, create nodes, read readiness."""

from __future__ import annotations

import hashlib
import json
import os
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
        server-side apply of a large CRD costs the API server most of a second). A file whose
        CRDs are all applied already is not even parsed: `<cache>/crd-digests.json` remembers
        which CRD hashes each file content yields."""
        applied = self._applied_crd_hashes()
        memo_file = build.cache_root() / "crd-digests.json"
        try:
            memo: dict[str, list[list[str]]] = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}
        names: list[str] = []
        for path in files:
            data = path.read_bytes()
            key = hashlib.sha256(data).hexdigest()
            known = memo.get(key)
            if known is not None and all(applied.get(name) == digest for name, digest in known):
                names += [name for name, _ in known]
                continue
            objects = [d for d in yaml.load_all(data.decode(), Loader=_LOADER) if isinstance(d, dict)]
            crds = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
            entries = []
            for crd in crds:
                digest = hashlib.sha256(json.dumps(crd, sort_keys=True).encode()).hexdigest()[:16]
                crd.setdefault("metadata", {}).setdefault("annotations", {})[HASH_ANNOTATION] = digest
                entries.append([crd["metadata"]["name"], digest])
            self.apply_objects([c for c, (name, digest) in zip(crds, entries, strict=True)
                                if applied.get(name) != digest])
            others = [o for o in objects if o.get("kind") != "CustomResourceDefinition"]
            if others:
                self.wait_crds_established([name for name, _ in entries], timeout=60)
                self.apply_objects(others)
            else:
                memo[key] = entries  # files with other objects are applied every time
            names += [name for name, _ in entries]
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, memo_file)
        return names

    def wait_crds_established(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while True:
            # One raw list: deserialising each large CRD into typed models takes seconds.
            response = self.ext.list_custom_resource_definition(_preload_content=False)
            for item in json.loads(response.data).get("items") or []:  # type: ignore[attr-defined]
                conditions = (item.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                    pending.discard(item["metadata"]["name"])
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"CRDs not established after {timeout:.0f}s: {sorted(pending)}")
            time.sleep(0.2)

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

    def apply_hypernodes(self, hypernodes: list[dict[str, Any]]) -> int:
        """Apply the HyperNodes whose spec or labels differ from what exists; return how many."""
        listing: dict[str, Any] = self.custom.list_cluster_custom_object(  # type: ignore[assignment]
            "topology.volcano.sh", "v1alpha1", "hypernodes")
        existing = {h["metadata"]["name"]: h for h in listing.get("items", [])}
        changed = []
        for hn in hypernodes:
            have = existing.get(hn["metadata"]["name"])
            labels = (have or {}).get("metadata", {}).get("labels") or {}
            if have is None or have.get("spec") != hn["spec"] or \
                    any(labels.get(k) != v for k, v in hn["metadata"].get("labels", {}).items()):
                changed.append(hn)
        self.apply_objects(changed)
        return len(changed)

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
