"""Pinned versions of every component of the local cluster.

Volcano v1.14.1 is the newest release whose whole dependency set is on the module proxy:
v1.15.0's go.mod needs `volcano.sh/apis` v1.15.0, which the proxy refuses (403), and the
`staging/src/volcano.sh/apis` directory its replace points at is not in the module zip.
v1.14.1 builds against the published `volcano.sh/apis` v1.14.0, which already has
`PodGroup.spec.subGroupPolicy`, `highestTierName` and the `network-topology-aware` plugin.
Kubernetes follows Volcano's go.mod (k8s.io/kubernetes v1.34.1).
"""

from __future__ import annotations

ETCD = "v3.5.35"
KUBERNETES = "v1.34.1"
VOLCANO = "v1.14.1"
VOLCANO_APIS = "v1.14.0"
KWOK = "v0.8.0"

ETCD_MODULE = "go.etcd.io/etcd/server/v3"
KUBERNETES_MODULE = "k8s.io/kubernetes"
VOLCANO_MODULE = "volcano.sh/volcano"
VOLCANO_APIS_MODULE = "volcano.sh/apis"
KWOK_MODULE = "sigs.k8s.io/kwok"


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes v1.N.M publishes its staging modules as v0.N.M."""
    if not kubernetes_version.startswith("v1."):
        raise ValueError(f"kubernetes version {kubernetes_version!r}: expected v1.N.M")
    return "v0." + kubernetes_version[len("v1.") :]
