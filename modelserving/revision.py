"""Revision hashes and ControllerRevision objects.

Kthena hashes `spec.template.roles` with replicas and the rolling-update fields removed
(FNV-32 of a canonical dump, encoded with Kubernetes' "safe" alphabet). Caldera also hashes
`gangPolicy` and `networkTopology`, so changing them rolls the ServingGroups out instead of
silently leaving running gangs on the old topology (Kthena issue #1114).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelserving.labels import (
    API_VERSION,
    CONTROLLER_REVISION_HASH_LABEL,
    CONTROLLER_REVISION_NAME_LABEL,
    KIND,
)
from modelserving.naming import controller_revision_name
from modelserving.spec import ModelServing, Role, Template

# k8s.io/apimachinery/pkg/util/rand.SafeEncodeString: no vowels, no look-alike digits.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _fnv32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = (value * 0x01000193) & 0xFFFFFFFF
        value ^= byte
    return value


def _safe_encode(text: str) -> str:
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def stable_hash(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return _safe_encode(str(_fnv32(canonical.encode())))


def role_template_hash(role: Role) -> str:
    return stable_hash(role.raw_for_hash())


def template_revision(template: Template) -> str:
    return stable_hash({
        "roles": [r.raw_for_hash() for r in template.roles],
        "gangPolicy": template.gang_policy,
        "networkTopology": template.network_topology,
    })


def controller_revision(ms: ModelServing, revision: str, number: int) -> dict[str, Any]:
    """The ControllerRevision that snapshots the template of `revision` for later recreation."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": controller_revision_name(ms.name, revision),
            "namespace": ms.namespace,
            "labels": {CONTROLLER_REVISION_NAME_LABEL: ms.name, CONTROLLER_REVISION_HASH_LABEL: revision},
            "ownerReferences": [owner_reference(ms)],
        },
        "data": {"template": ms.raw_template},
        "revision": number,
    }


def template_from_revision(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    data = obj.get("data") or {}
    template = data.get("template") if isinstance(data, Mapping) else None
    return template if isinstance(template, Mapping) else None


def owner_reference(ms: ModelServing) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": ms.name,
        "uid": ms.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
