"""Prometheus scrape targets for annotated pods, as a `file_sd_configs` target file.

Debian's prometheus 2.42 is built without Kubernetes service discovery (its config parser
rejects `kubernetes_sd_configs`), so the process runner, which already watches every pod,
writes the targets Kubernetes discovery would have produced. A Running pod with an IP is a
target when annotated `prometheus.io/scrape: "true"`; the port is `prometheus.io/port` or its
first container port, the path `prometheus.io/path` (default /metrics). Labels: `namespace`,
`pod`, `node`, and each pod label (name sanitised to a Prometheus label name).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

SCRAPE = "prometheus.io/scrape"
PORT = "prometheus.io/port"
PATH = "prometheus.io/path"

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    name = _INVALID.sub("_", key)
    return name if not name[:1].isdigit() else "_" + name


def target_group(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The file_sd target group of one pod, or None if it is not to be scraped now."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(SCRAPE, "")).lower() != "true" or meta.get("deletionTimestamp"):
        return None
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip:
        return None
    port = str(annotations.get(PORT) or "")
    if not port.isdigit():
        ports = [p.get("containerPort") for c in spec.get("containers") or [] for p in c.get("ports") or []]
        port = str(ports[0]) if ports and ports[0] else ""
    if not port:
        return None
    labels = {label_name(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    labels.update({
        "namespace": str(meta.get("namespace", "")),
        "pod": str(meta.get("name", "")),
        "node": str(spec.get("nodeName", "")),
        "__metrics_path__": str(annotations.get(PATH) or "/metrics"),
    })
    return {"targets": [f"{ip}:{port}"], "labels": labels}


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    """Write atomically, so Prometheus never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=1, sort_keys=True))
    os.replace(tmp, path)
