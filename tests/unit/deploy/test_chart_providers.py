"""router.externalModelProviders.enabled: the one opt-in that lets the router read Secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
PERMISSIONS = yaml.safe_load((ROOT / "deploy" / "helm" / "caldera" / "files" / "permissions.yaml").read_text())
Objects = list[dict[str, Any]]
ENABLED = {"router": {"externalModelProviders": {"enabled": True}}}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def declared(conditions: frozenset[str]) -> set[tuple[str, str, str]]:
    return grants([e for e in PERMISSIONS["router"] if not e.get("when") or e["when"] in conditions])


def router_rules(objects: Objects, kind: str = "ClusterRole") -> list[dict[str, Any]]:
    (role,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == "caldera-router"]
    return list(role["rules"])


def test_enabled_router_role_grants_exactly_the_declared_provider_permissions(
        render: Callable[..., Objects]) -> None:
    assert grants(router_rules(render(ENABLED))) == declared(frozenset({"routerExternalModelProviders"}))


def test_enabled_router_may_list_and_watch_secrets_but_never_get_them_by_name(
        render: Callable[..., Objects]) -> None:
    secrets = {v for g, r, v in grants(router_rules(render(ENABLED))) if r == "secrets"}
    assert secrets == {"list", "watch"}


def test_enabled_router_in_one_namespace_reads_secrets_only_there(render: Callable[..., Objects]) -> None:
    objects = render({"router": {"externalModelProviders": {"enabled": True}, "watchNamespace": "serving"}})
    (role,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "caldera-router"]
    assert role["metadata"]["namespace"] == "serving"
    assert ("", "secrets", "watch") in grants(role["rules"])


def test_enabled_router_config_switches_the_provider_watch_on(render: Callable[..., Objects]) -> None:
    objects = render({"router": {"externalModelProviders": {"enabled": True}, "config": {"profile": "random"}}})
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "caldera-router"]
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == {"profile": "random", "providers": {"enabled": True}}


def test_default_router_has_no_provider_grants(default_objects: Objects) -> None:
    resources = {r for _, r, _ in grants(router_rules(default_objects))}
    assert not resources & {"secrets", "externalmodelproviders", "externalmodelproviders/status"}
