"""Status the router reports on the Gateway API objects it serves (cluster mode).

- Gateway: `Accepted`, `Programmed` (every listener bound) and, per listener, `Accepted`,
  `Programmed`, `ResolvedRefs` with `supportedKinds` (HTTPRoute) and `attachedRoutes`;
- HTTPRoute: one `status.parents` entry per parentRef naming a Gateway we serve, with
  `Accepted` (it attaches to a listener) and `ResolvedRefs` (every backend is an existing
  InferencePool); entries of other controllers are kept;
- InferencePool: one `status.parents` entry per Gateway whose HTTPRoutes reference it.

`desired_*` are pure functions of the compiled table; `StatusWriter` compares them with what
the objects hold (ignoring `lastTransitionTime`, which is kept while a condition does not
change) and patches the status subresource only when they differ, so at steady state it
writes nothing.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from router.gateway.objects import (
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    INFERENCE_GROUP,
    INFERENCE_VERSION,
    compile_parent_refs,
)
from router.gateway.table import GatewayTable

log = logging.getLogger(__name__)

CONTROLLER_NAME = "caldera.dev/router"
EPOCH = "1970-01-01T00:00:00Z"


def _cond(kind: str, ok: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    c: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
                         "lastTransitionTime": EPOCH}
    if generation is not None:
        c["observedGeneration"] = generation
    return c


def _generation(obj: Mapping[str, Any]) -> int | None:
    gen = (obj.get("metadata") or {}).get("generation")
    return int(gen) if isinstance(gen, int) else None


def desired_gateway(obj: Mapping[str, Any], table: GatewayTable, listener_errors: Mapping[int, str],
                    open_ports: set[int]) -> dict[str, Any] | None:
    """The Gateway's status, or None when it is not ours (another class)."""
    meta = obj.get("metadata") or {}
    key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
    gw = table.gateways.get(key)
    if gw is None:
        return None
    gen = _generation(obj)
    attached: dict[str, int] = {}
    for listeners in table.attached_routes.values():
        for lid in listeners:
            attached[lid] = attached.get(lid, 0) + 1
    listeners_status: list[dict[str, Any]] = []
    problems: list[str] = []
    for item in (obj.get("spec") or {}).get("listeners") or ():
        name = item.get("name")
        listener = next((x for x in gw.listeners if x.name == name), None)
        if listener is None:
            reason = next((u.split(": ", 1)[1] for u in gw.unsupported if u.startswith(f"{name}: ")),
                          "not supported")
            problems.append(f"listener {name}: {reason}")
            conds = [_cond("Accepted", False, "UnsupportedProtocol", reason, gen),
                     _cond("Programmed", False, "Invalid", reason, gen),
                     _cond("ResolvedRefs", True, "ResolvedRefs", "No references", gen)]
        elif (problem := table.problems.get(listener.id)) is not None:
            problems.append(f"listener {name}: {problem.message}")
            conflicted = problem.condition == "Conflicted"
            refs_ok = problem.condition != "ResolvedRefs"
            accepted_ok = problem.condition == "ResolvedRefs"  # a bad certificateRef: valid listener, not served
            conds = [_cond("Accepted", accepted_ok, "Accepted" if accepted_ok else problem.reason,
                           "Listener accepted" if accepted_ok else problem.message, gen),
                     _cond("Programmed", False, "Invalid", problem.message, gen),
                     _cond("ResolvedRefs", refs_ok, "ResolvedRefs" if refs_ok else problem.reason,
                           "All references resolved" if refs_ok else problem.message, gen)]
            if conflicted:
                conds.append(_cond("Conflicted", True, problem.reason, problem.message, gen))
        else:
            error = listener_errors.get(listener.port)
            bound = error is None and listener.port in open_ports
            msg = "Listener is serving" if bound else f"Listener cannot bind port {listener.port}: {error or 'pending'}"
            if not bound:
                problems.append(f"listener {name}: {msg}")
            conds = [_cond("Accepted", error is None, "Accepted" if error is None else "PortUnavailable",
                           "Listener accepted" if error is None else msg, gen),
                     _cond("Programmed", bound, "Programmed" if bound else "Pending", msg, gen),
                     _cond("ResolvedRefs", True, "ResolvedRefs", "All references resolved", gen)]
        listeners_status.append({"name": name, "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
                                 "attachedRoutes": attached.get(f"{key}/{name}", 0), "conditions": conds})
    programmed = not problems
    return {"conditions": [
        _cond("Accepted", True, "Accepted", "Gateway accepted by the Caldera router", gen),
        _cond("Programmed", programmed, "Programmed" if programmed else "Invalid",
              "Every listener is serving" if programmed else "; ".join(problems), gen)],
        "listeners": listeners_status}


def desired_http_route_parents(obj: Mapping[str, Any], table: GatewayTable) -> list[dict[str, Any]] | None:
    """Our `status.parents` entries, or None when no parentRef names a Gateway we serve."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    key = f"{ns}/{meta.get('name')}"
    spec = obj.get("spec") or {}
    gen = _generation(obj)
    route = table.http_routes.get(key)
    entries: list[dict[str, Any]] = []
    for raw in spec.get("parentRefs") or ():
        refs = compile_parent_refs([raw], ns, f"HTTPRoute {key}")
        if not refs or refs[0].gateway not in table.gateways:
            continue
        ref = refs[0]
        attached = [lid for lid in table.attached_routes.get(key, ())
                    if lid.startswith(ref.gateway + "/")
                    and (ref.section is None or lid == f"{ref.gateway}/{ref.section}")]
        denied = [lid for lid in table.denied_routes.get(key, ()) if lid.startswith(ref.gateway + "/")]
        unsupported = route.unsupported_filters if route is not None else []
        if attached and unsupported:
            accepted = _cond("Accepted", False, "UnsupportedValue",
                             "Unsupported filters (matching requests get a 500): " + ", ".join(unsupported), gen)
        elif attached:
            accepted = _cond("Accepted", True, "Accepted", "Route attached to " + ", ".join(attached), gen)
        elif denied:
            accepted = _cond("Accepted", False, "NotAllowedByListeners",
                             "allowedRoutes of " + ", ".join(denied) + " do not admit this namespace", gen)
        else:
            accepted = _cond("Accepted", False, "NoMatchingParent",
                             "No listener of this Gateway matches the parentRef and hostnames", gen)
        missing: list[str] = []
        invalid: list[str] = []
        refused: list[str] = []
        for rule in route.rules if route is not None else ():
            for b in rule.backends:
                if not b.served:
                    invalid.append(f"{b.kind} {b.namespace}/{b.name}")
                elif b.kind == "Service":
                    problem = table.services.errors.get(b.server_key)
                    if problem is not None:
                        (refused if problem[0] == "RefNotPermitted" else missing).append(problem[1])
                elif b.pool_key not in table.pools:
                    missing.append(f"InferencePool {b.pool_key}")
        if route is None:
            resolved = _cond("ResolvedRefs", False, "Invalid", "; ".join(table.errors) or "invalid route", gen)
        elif invalid:
            resolved = _cond("ResolvedRefs", False, "InvalidKind", "Only InferencePool and Service backends are "
                             "served: " + ", ".join(invalid), gen)
        elif refused:
            resolved = _cond("ResolvedRefs", False, "RefNotPermitted", "; ".join(refused), gen)
        elif missing:
            resolved = _cond("ResolvedRefs", False, "BackendNotFound", "Not found: " + ", ".join(missing), gen)
        else:
            resolved = _cond("ResolvedRefs", True, "ResolvedRefs", "All references resolved", gen)
        entries.append({"parentRef": dict(raw), "controllerName": CONTROLLER_NAME,
                        "conditions": [accepted, resolved]})
    return entries or None


def desired_pool_parents(obj: Mapping[str, Any], table: GatewayTable) -> list[dict[str, Any]] | None:
    """One entry per served Gateway with an HTTPRoute referencing this pool, or None."""
    meta = obj.get("metadata") or {}
    key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
    gen = _generation(obj)
    gateways: set[str] = set()
    for route_key, listeners in table.attached_routes.items():
        route = table.http_routes[route_key]
        if any(b.kind == "InferencePool" and b.pool_key == key for r in route.rules for b in r.backends):
            gateways.update(lid.rsplit("/", 1)[0] for lid in listeners)
    if not gateways:
        return None
    ok = key in table.pools
    return [{"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": g.split("/", 1)[0],
                           "name": g.split("/", 1)[1]},
             "controllerName": CONTROLLER_NAME,
             "conditions": [_cond("Accepted", ok, "Accepted" if ok else "Invalid",
                                  "Pool served by the Caldera router" if ok else "; ".join(table.errors), gen),
                            _cond("ResolvedRefs", True, "ResolvedRefs", "The router picks endpoints itself", gen)]}
            for g in sorted(gateways)]


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def strip(conds: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
                for c in conds]
    return strip(a) == strip(b)


def keep_transition_times(new: list[dict[str, Any]], old: list[dict[str, Any]] | None, now: str) -> None:
    """A condition that did not change keeps its lastTransitionTime; a changed one gets `now`."""
    before = {c.get("type"): c for c in old or ()}
    for c in new:
        prev = before.get(c["type"])
        same = prev is not None and all(prev.get(k) == c.get(k) for k in ("status", "reason", "message"))
        c["lastTransitionTime"] = prev["lastTransitionTime"] if same and prev else now


def merge_parents(ours: list[dict[str, Any]] | None, current: list[dict[str, Any]] | None, now: str
                  ) -> list[dict[str, Any]]:
    """Other controllers' entries unchanged, then ours (with transition times carried over)."""
    current = current or []
    others = [p for p in current if p.get("controllerName") != CONTROLLER_NAME]
    mine_before = {repr(sorted((p.get("parentRef") or {}).items())): p for p in current
                   if p.get("controllerName") == CONTROLLER_NAME}
    for entry in ours or ():
        prev = mine_before.get(repr(sorted(entry["parentRef"].items())))
        keep_transition_times(entry["conditions"], prev.get("conditions") if prev else None, now)
    return others + list(ours or ())


def parents_unchanged(new: list[dict[str, Any]], old: list[dict[str, Any]] | None) -> bool:
    old = old or []
    if len(new) != len(old):
        return False
    return all(a.get("parentRef") == b.get("parentRef") and a.get("controllerName") == b.get("controllerName")
               and _same(a.get("conditions") or [], b.get("conditions") or []) for a, b in zip(new, old, strict=True))


class StatusWriter:
    """Writes status in its own thread, after rebuilds and listener changes, coalescing bursts."""

    def __init__(self, api: client.ApiClient, snapshot: Callable[[], tuple[GatewayTable, dict[str, list[Any]],
                                                                            dict[int, str], set[int]]],
                 debounce_s: float = 0.2) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.snapshot = snapshot
        self.debounce_s = debounce_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-status", daemon=True)
        self.writes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def submit(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._stop.wait(self.debounce_s)  # coalesce a burst of changes into one pass
            self._wake.clear()
            try:
                self.write_all()
            except Exception as exc:  # the next change retries; status is advisory
                log.warning("writing Gateway API status failed", extra={"reason": repr(exc)})

    def write_all(self) -> None:
        table, raw, errors, open_ports = self.snapshot()
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for obj in raw.get("gateways", ()):
            want = desired_gateway(obj, table, errors, open_ports)
            if want is None:
                continue
            have = obj.get("status") or {}
            same = _same(want["conditions"], have.get("conditions") or []) and len(want["listeners"]) == len(
                have.get("listeners") or []) and all(
                a["name"] == b.get("name") and a["attachedRoutes"] == b.get("attachedRoutes")
                and _same(a["conditions"], b.get("conditions") or [])
                for a, b in zip(want["listeners"], have.get("listeners") or [], strict=False))
            if same:
                continue
            keep_transition_times(want["conditions"], have.get("conditions"), now)
            before = {x.get("name"): x for x in have.get("listeners") or ()}
            for ls in want["listeners"]:
                keep_transition_times(ls["conditions"], (before.get(ls["name"]) or {}).get("conditions"), now)
            self._patch(GATEWAY_GROUP, GATEWAY_VERSION, "gateways", obj, {"status": want})
        for plural, group, version, desired in (
                ("httproutes", GATEWAY_GROUP, GATEWAY_VERSION, desired_http_route_parents),
                ("inferencepools", INFERENCE_GROUP, INFERENCE_VERSION, desired_pool_parents)):
            for obj in raw.get(plural, ()):
                ours = desired(obj, table)
                current = (obj.get("status") or {}).get("parents")
                merged = merge_parents(ours, current, now)
                if parents_unchanged(merged, current):
                    continue
                self._patch(group, version, plural, obj, {"status": {"parents": merged}})

    def _patch(self, group: str, version: str, plural: str, obj: Mapping[str, Any], body: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        try:
            self.custom.patch_namespaced_custom_object_status(group, version, meta.get("namespace") or "default",
                                                              plural, meta["name"], body)
            self.writes += 1
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report
                log.warning("status patch failed", extra={"kind": plural, "name": meta.get("name"),
                                                          "reason": str(exc.reason)})
