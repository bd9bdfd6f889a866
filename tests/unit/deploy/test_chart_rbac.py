"""The chart's RBAC is exactly deploy/helm/caldera/files/permissions.yaml, and never broad.
(That the list is also *sufficient and used* is proven on the API server by
tests/integration/deploy/test_rbac.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PERMISSIONS = yaml.safe_load((ROOT / "deploy" / "helm" / "caldera" / "files" / "permissions.yaml").read_text())
Objects = list[dict[str, Any]]
Grant = tuple[str, str, str, str]  # (apiGroup, resource, resourceName or "", verb)


def grants(rules: list[dict[str, Any]]) -> set[Grant]:
    return {(g, r, n, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for n in rule.get("resourceNames") or [""] for v in rule["verbs"]}


def declared(component: str, scope: str | None = None, conditions: frozenset[str] = frozenset()) -> set[Grant]:
    return grants([e for e in PERMISSIONS[component] if (scope is None or e["scope"] == scope)
                   and (not e.get("when") or e["when"] in conditions)])


CONTROLLER_MANAGED = frozenset({"controllerManagedWebhooks"})


def role_rules(objects: Objects, kind: str, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
             and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name} in {namespace}, got {len(found)}"
    return list(found[0]["rules"])


def test_controller_cluster_role_grants_exactly_the_declared_permissions(default_objects: Objects) -> None:
    assert grants(role_rules(default_objects, "ClusterRole", "caldera-controller")) == declared(
        "controller", conditions=CONTROLLER_MANAGED)


def test_router_cluster_role_grants_exactly_the_declared_permissions(default_objects: Objects) -> None:
    assert grants(role_rules(default_objects, "ClusterRole", "caldera-router")) == declared("router")


def test_chart_owned_webhooks_drop_the_webhook_configuration_grants(render: Callable[..., Objects]) -> None:
    objects = render({"webhooks": {"certificate": {"mode": "helm"}}})
    rules = grants(role_rules(objects, "ClusterRole", "caldera-controller"))
    assert rules == declared("controller")
    assert not [g for g in rules if g[0] == "admissionregistration.k8s.io"]


def test_webhook_configuration_patch_is_limited_to_the_controller_configuration(default_objects: Objects) -> None:
    patches = {g for g in grants(role_rules(default_objects, "ClusterRole", "caldera-controller"))
               if g[0] == "admissionregistration.k8s.io" and g[3] == "patch"}
    assert patches and {name for _, _, name, _ in patches} == {"caldera.volcano.sh"}


@pytest.mark.parametrize("component", ["controller", "router"])
def test_cluster_role_is_bound_to_the_component_service_account(default_objects: Objects, component: str) -> None:
    binding = next(o for o in default_objects
                   if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == f"caldera-{component}")
    assert binding["roleRef"]["name"] == f"caldera-{component}"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"caldera-{component}",
                                    "namespace": "caldera-system"}]


def test_no_role_grants_secrets_or_wildcards(render: Callable[..., Objects]) -> None:
    for objects in (render(), render({"controller": {"watchNamespaces": ["a", "b"]}, "router": {"watchNamespace": "a"}})):
        for role in (o for o in objects if o["kind"] in {"Role", "ClusterRole"}):
            for rule in role["rules"]:
                fields = rule["apiGroups"] + rule["resources"] + rule["verbs"]
                assert "*" not in fields, f"{role['metadata']['name']}: wildcard in {rule}"
                assert "secrets" not in rule["resources"] or rule.get("resourceNames"), (
                    f"{role['metadata']['name']}: grants Secrets beyond named ones")
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_named_prometheus_auth_secrets_are_readable_by_name_only(render: Callable[..., Objects]) -> None:
    objects = render({"controller": {"prometheusAuthSecrets": [{"namespace": "team-a", "name": "prom-token"}]}})
    rules = role_rules(objects, "Role", "caldera-controller-prometheus-auth", "team-a")
    assert rules == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["prom-token"], "verbs": ["get"]}]


def test_no_secret_is_readable_by_default(default_objects: Objects) -> None:
    assert not [r for o in default_objects if o["kind"] in {"Role", "ClusterRole"} for r in o["rules"]
                if "secrets" in r["resources"]]


def test_leader_worker_set_grants_only_when_enabled(render: Callable[..., Objects]) -> None:
    objects = render({"controller": {"leaderWorkerSet": {"enabled": True}}})
    assert grants(role_rules(objects, "ClusterRole", "caldera-controller")) == declared(
        "controller", conditions=CONTROLLER_MANAGED | {"leaderWorkerSet"})


def test_router_only_reads(default_objects: Objects) -> None:
    verbs = {v for _, _, _, v in grants(role_rules(default_objects, "ClusterRole", "caldera-router"))}
    assert verbs <= {"list", "watch"}


def test_every_declared_permission_says_why() -> None:
    missing = [e for component in PERMISSIONS.values() for e in component if not e.get("why")]
    assert not missing


def test_rare_verbs_are_granted_and_say_when_they_are_needed() -> None:
    for entry in (e for component in PERMISSIONS.values() for e in component if e.get("rareVerbs")):
        assert set(entry["rareVerbs"]) <= set(entry["verbs"]) and entry.get("rare"), entry


def test_watched_namespaces_get_roles_and_the_cluster_role_keeps_only_cluster_scope(
        render: Callable[..., Objects]) -> None:
    objects = render({"controller": {"watchNamespaces": ["team-a", "team-b"]}})
    assert grants(role_rules(objects, "ClusterRole", "caldera-controller")) == declared(
        "controller", "cluster", CONTROLLER_MANAGED | {"controllerWatchesNamespaces"})
    for namespace in ("team-a", "team-b"):
        rules = role_rules(objects, "Role", "caldera-controller", namespace)
        assert grants(rules) == declared("controller", "namespaced")


def test_router_watching_one_namespace_gets_no_cluster_role(render: Callable[..., Objects]) -> None:
    objects = render({"router": {"watchNamespace": "serving"}})
    assert not [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "caldera-router"]
    assert grants(role_rules(objects, "Role", "caldera-router", "serving")) == declared("router")


SOURCES = {
    "controller": [ROOT / "caldera" / "controller.py", ROOT / "modelserving", ROOT / "placement",
                   ROOT / "autoscaler", ROOT / "webhooks"],
    "router": [ROOT / "router"],
}


def source_text(paths: list[Path]) -> str:
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*.py")))]
    return "\n".join(f.read_text() for f in files)


@pytest.mark.parametrize("component", ["controller", "router"])
def test_every_granted_resource_is_named_in_the_code_that_uses_it(component: str) -> None:
    import kopf

    own = source_text(SOURCES[component])
    library = source_text([Path(kopf.__file__).parent])
    missing = []
    for entry in PERMISSIONS[component]:
        text = library if entry.get("usedBy") == "kopf" else own
        for resource in entry["resources"]:
            if not all(part in text for part in resource.split("/")):
                missing.append(resource)
    assert not missing, f"granted but not named anywhere in the {component}'s code: {missing}"
