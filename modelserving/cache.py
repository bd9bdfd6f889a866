"""The controller's view of the cluster: watch events and its own writes, per ModelServing.

Fed by kopf's watch streams (`on.event`) and by the results of the controller's own
writes (so the next reconcile sees them before the watch does), seeded and periodically
replaced by a LIST. Deletions the controller issued are remembered until the watch shows
the objects gone, so a slow watch can never make a deleted gang look alive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelserving import labels as L
from modelserving.naming import ordinal_of
from modelserving.observed import Observed

Key = tuple[str, str]  # (namespace, ModelServing name)
KINDS = ("Pod", "Service", "PodGroup", "ControllerRevision")
# A deletion we issued and never saw finish is forgotten after this long (then the objects speak again).
DELETION_MEMORY_SECONDS = 120.0


def _owned(obj: Mapping[str, Any], uid: str | None) -> bool:
    if not uid:
        return True
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return not any(o.get("kind") == "ModelServing" and o.get("uid") != uid for o in owners)


def _older(obj: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """`obj` is an earlier version of the same object than `current`. Resource versions are etcd
    revisions on every kube-apiserver; anything else is treated as not comparable."""
    if current is None:
        return False
    meta, cur = obj.get("metadata") or {}, current.get("metadata") or {}
    if meta.get("uid") != cur.get("uid"):
        return False
    mine, theirs = str(meta.get("resourceVersion") or ""), str(cur.get("resourceVersion") or "")
    return mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs)


def owner_key(obj: Mapping[str, Any]) -> Key | None:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(L.NAME_LABEL)
    if not name:
        return None
    return (str(meta.get("namespace") or "default"), str(name))


@dataclass
class Entry:
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    deleted_uids: dict[str, float] = field(default_factory=dict)  # pod uid -> when we deleted it
    deleting_groups: dict[int, float] = field(default_factory=dict)
    deleting_roles: dict[tuple[int, str, int], float] = field(default_factory=dict)
    gone_uids: dict[str, float] = field(default_factory=dict)  # uid -> when the watch showed it deleted
    seeded: bool = False
    running_roles: set[str] | None = None  # for RoleRunning events; None until the first reconcile


class Cache:
    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}
        self.modelservings: dict[Key, dict[str, Any]] = {}
        self.triggers: dict[Key, asyncio.Event] = {}

    def entry(self, key: Key) -> Entry:
        return self.entries.setdefault(key, Entry())

    def trigger(self, key: Key) -> asyncio.Event:
        return self.triggers.setdefault(key, asyncio.Event())

    def kick(self, key: Key) -> None:
        self.trigger(key).set()

    def queue_depth(self) -> int:
        """ModelServings with a change not yet reconciled."""
        return sum(1 for k, e in self.triggers.items() if e.is_set() and k in self.modelservings)

    def forget(self, key: Key) -> None:
        self.entries.pop(key, None)
        self.modelservings.pop(key, None)
        self.triggers.pop(key, None)

    # -- watch events and write results ------------------------------------------------------
    def observe(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> Key | None:
        key = owner_key(obj)
        if key is None:
            return None
        entry = self.entry(key)
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        store = entry.objects[kind]
        uid = str(meta.get("uid"))
        if event_type == "DELETED":
            current = store.get(name)
            if current is None or (current.get("metadata") or {}).get("uid") == meta.get("uid"):
                store.pop(name, None)
            entry.deleted_uids.pop(uid, None)
            entry.gone_uids[uid] = time.monotonic()
        elif uid not in entry.gone_uids and not _older(obj, store.get(name)):
            # A write's response can land after the watch has delivered later versions (or the
            # deletion) of the same object; an older copy must not overwrite them.
            store[name] = dict(obj)
        return key

    def replace(self, key: Key, kind: str, items: Iterable[Mapping[str, Any]]) -> None:
        """A LIST result replaces everything known about `kind` for this ModelServing."""
        self.entry(key).objects[kind] = {str(o["metadata"]["name"]): dict(o) for o in items}

    def mark_deleted(self, key: Key, labels: Mapping[str, str]) -> None:
        """Remember a DeleteCollection: matching pods count as terminating from now on."""
        entry = self.entry(key)
        now = time.monotonic()
        for pod in entry.objects["Pod"].values():
            pod_labels = (pod.get("metadata") or {}).get("labels") or {}
            if all(pod_labels.get(k) == v for k, v in labels.items()):
                entry.deleted_uids[str(pod["metadata"].get("uid"))] = now
        group = labels.get(L.GROUP_NAME_LABEL)
        if group is None:
            return
        ordinal = ordinal_of(group)
        rid = labels.get(L.ROLE_ID_LABEL)
        if rid is None:
            entry.deleting_groups[ordinal] = now
        else:
            role, _, index = rid.rpartition("-")
            entry.deleting_roles[(ordinal, role, int(index))] = now

    def mark_pod_deleted(self, key: Key, uid: str) -> None:
        self.entry(key).deleted_uids[uid] = time.monotonic()

    # -- the view a reconcile plans against --------------------------------------------------
    def observed(self, key: Key, uid: str | None = None) -> Observed:
        """The objects of ModelServing `key`; with `uid`, leftovers of a deleted namesake are left out
        (the garbage collector removes them; until then they must not count as this one's)."""
        entry = self.entry(key)
        now = time.monotonic()
        for memory in (entry.deleted_uids, entry.deleting_groups, entry.deleting_roles, entry.gone_uids):
            for k in [k for k, t in memory.items() if now - t > DELETION_MEMORY_SECONDS]:
                del memory[k]  # type: ignore[arg-type]
        pods: dict[str, Mapping[str, Any]] = {}
        live_groups: set[int] = set()
        live_roles: set[tuple[int, str, int]] = set()
        for name, pod in entry.objects["Pod"].items():
            if not _owned(pod, uid):
                continue
            meta = pod.get("metadata") or {}
            if str(meta.get("uid")) in entry.deleted_uids and not meta.get("deletionTimestamp"):
                pod = {**pod, "metadata": {**meta, "deletionTimestamp": "1970-01-01T00:00:00Z"}}
            pods[name] = pod
            labels = meta.get("labels") or {}
            ordinal = ordinal_of(str(labels.get(L.GROUP_NAME_LABEL, "")))
            rid = str(labels.get(L.ROLE_ID_LABEL, ""))
            live_groups.add(ordinal)
            live_roles.add((ordinal, str(labels.get(L.ROLE_LABEL, "")), ordinal_of(rid)))
        kept: dict[str, dict[str, Mapping[str, Any]]] = {
            kind: {n: o for n, o in entry.objects[kind].items() if _owned(o, uid)}
                for kind in ("Service", "PodGroup", "ControllerRevision")}
        for name in kept["PodGroup"]:
            live_groups.add(ordinal_of(name))
        # A deletion is complete once nothing of it is left.
        for g in [g for g in entry.deleting_groups if g not in live_groups]:
            del entry.deleting_groups[g]
        for r in [r for r in entry.deleting_roles if r not in live_roles]:
            del entry.deleting_roles[r]
        return Observed(
            pods=pods,
            services=kept["Service"],
            podgroups=kept["PodGroup"],
            revisions=kept["ControllerRevision"],
            deleting_groups=set(entry.deleting_groups),
            deleting_roles=set(entry.deleting_roles),
        )
