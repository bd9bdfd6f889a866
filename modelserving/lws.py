"""LeaderWorkerSet compatibility (Kthena §2.9): an LWS is served as a one-role ModelServing.

Only the LWS CRD is needed, not its controller. The ModelServing has the LWS's name, is
owned by it, has one role `default` (replicas 1) whose entry template is the leader
template (or the worker template), `workerReplicas = size - 1`, and `replicas = lws.replicas`.
The LWS status mirrors the ModelServing's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from modelserving.labels import API_VERSION, KIND

LWS_GROUP = "leaderworkerset.x-k8s.io"
LWS_VERSION = "v1"
LWS_PLURAL = "leaderworkersets"
LWS_LABELS_PLUGIN = "lws-standard-labels"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


def _template(src: Mapping[str, Any]) -> dict[str, Any]:
    meta = src.get("metadata") or {}
    out: dict[str, Any] = {"spec": copy.deepcopy(dict(src.get("spec") or {}))}
    kept = {k: dict(meta[k]) for k in ("labels", "annotations") if meta.get(k)}
    if kept:
        out["metadata"] = kept
    return out


def modelserving_from_lws(lws: Mapping[str, Any]) -> dict[str, Any]:
    meta = lws.get("metadata") or {}
    spec = lws.get("spec") or {}
    lwt = spec.get("leaderWorkerTemplate") or {}
    worker = lwt.get("workerTemplate") or {}
    leader = lwt.get("leaderTemplate") or worker
    size = int(lwt.get("size") or 1)
    role: dict[str, Any] = {
        "name": "default",
        "replicas": 1,
        "entryTemplate": _template(leader),
        "workerReplicas": max(size - 1, 0),
    }
    if worker:
        role["workerTemplate"] = _template(worker)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "ownerReferences": [{
                "apiVersion": f"{LWS_GROUP}/{LWS_VERSION}", "kind": "LeaderWorkerSet", "name": meta.get("name"),
                "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "replicas": int(spec["replicas"]) if spec.get("replicas") is not None else 1,
            "plugins": [{"name": LWS_LABELS_PLUGIN, "type": "BuiltIn"}],
            "template": {"roles": [role]},
        },
    }


def spec_differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the ModelServing's spec lacks or contradicts what the LWS asks for (API defaults aside)."""
    return not _covers(current.get("spec") or {}, desired.get("spec") or {})


def _covers(have: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(_covers(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(
            _covers(h, w) for h, w in zip(have, want, strict=True))
    return bool(have == want)


def lws_status(ms: Mapping[str, Any]) -> dict[str, Any]:
    status = ms.get("status") or {}
    return {"replicas": int(status.get("replicas") or 0), "readyReplicas": int(status.get("availableReplicas") or 0)}


def lws_pod_labels(ms_name: str, group_ordinal: int, worker_index: int) -> dict[str, str]:
    """The labels LWS itself would put on the pod (Kthena's lws-standard-labels plugin)."""
    return {LWS_NAME_LABEL: ms_name, LWS_GROUP_INDEX_LABEL: str(group_ordinal),
            LWS_WORKER_INDEX_LABEL: str(worker_index)}
