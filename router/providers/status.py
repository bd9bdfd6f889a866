"""The status conditions of ExternalModelProviders, written by the router that resolves them.

Why the router and not the controller: the router is the component that reads the credential
Secrets and uses them; granting the controller Secret access as well, only to report on them,
would double the number of components that can read credentials. Kthena's router does the
same. Every router replica computes the same conditions from the same objects, and a status
is written only when it differs from what is stored (ignoring transition times), so replicas
agree instead of fighting and a steady state writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from router.api import GROUP, VERSION
from router.providers.provider import Condition, Provider

log = logging.getLogger(__name__)

PLURAL = "externalmodelproviders"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_status(obj: Mapping[str, Any], provider: Provider, now: str | None = None) -> dict[str, Any] | None:
    """The status to write for `obj` (its conditions set from `provider`), or None when it already says so.

    Conditions of other types are kept; a condition whose status did not change keeps its
    lastTransitionTime (metav1 SetStatusCondition semantics).
    """
    status = obj.get("status") or {}
    current = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    generation = (obj.get("metadata") or {}).get("generation")
    wanted: list[Condition] = list(provider.conditions)
    changed = status.get("observedGeneration") != generation
    merged = {t: dict(c) for t, c in current.items()}
    for cond in wanted:
        old = current.get(cond.type) or {}
        new: dict[str, Any] = {"type": cond.type, "status": cond.status, "reason": cond.reason,
                               "message": cond.message}
        if generation is not None:
            new["observedGeneration"] = generation
        same = all(old.get(k) == v for k, v in new.items())
        new["lastTransitionTime"] = (old.get("lastTransitionTime") if old.get("status") == cond.status
                                     and old.get("lastTransitionTime") else (now or _now()))
        if not same:
            changed = True
        merged[cond.type] = new if not same else {**old}
    if not changed:
        return None
    out: dict[str, Any] = {"conditions": list(merged.values())}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


class StatusWriter:
    """Patches provider status from the router's event loop (the API calls run in a thread)."""

    def __init__(self, custom: client.CustomObjectsApi) -> None:
        self.custom = custom
        self._running: set[asyncio.Task[None]] = set()

    def submit(self, objects: Iterable[Mapping[str, Any]], providers: Iterable[Provider]) -> None:
        by_key = {p.key: p for p in providers}
        loop = asyncio.get_running_loop()
        for obj in objects:
            meta = obj.get("metadata") or {}
            provider = by_key.get(f"{meta.get('namespace') or 'default'}/{meta.get('name')}")
            if provider is None:
                continue
            status = desired_status(obj, provider)
            if status is None:
                continue
            task = loop.create_task(asyncio.to_thread(self._patch, provider.namespace, provider.name, status))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _patch(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                              {"status": status})
            log.info("provider status written", extra={"provider": f"{namespace}/{name}",
                                                       "ready": [c["status"] for c in status["conditions"]
                                                                 if c["type"] == "Ready"]})
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report
                log.warning("cannot write provider status", extra={"provider": f"{namespace}/{name}",
                                                                   "reason": str(exc.reason)})
