"""The admin kubeconfig of a local cluster (certificates embedded, so the file stands alone)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from caldera.localcluster.pki import Pki

CONTEXT = "caldera-local"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render(pki: Pki, server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [{"name": "caldera-admin", "user": {"client-certificate-data": _b64(pki.admin_cert),
                                                      "client-key-data": _b64(pki.admin_key)}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "caldera-admin"}}],
        "current-context": CONTEXT,
    }


def write(path: Path, pki: Pki, server: str) -> Path:
    text = yaml.safe_dump(render(pki, server), sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        path.chmod(0o600)
    return path
