"""The chart registers exactly the admission handlers the controller serves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
import yaml

import webhooks.handlers  # noqa: F401  (importing registers the handlers with kopf)

ROOT = Path(__file__).resolve().parents[3]
Objects = list[dict[str, Any]]
Hook = tuple[str, str, str, str]  # (kind, handler id, apiGroup, resource)


GROUPS = {"workload.serving.volcano.sh", "networking.serving.volcano.sh"}


def served() -> set[Hook]:
    """Caldera's admission handlers in kopf's registry (other tests may register their own)."""
    hooks = set()
    for handler in kopf.get_default_registry()._webhooks.get_all_handlers():
        if handler.selector is None or handler.selector.group not in GROUPS:
            continue
        resource = handler.selector.plural or handler.selector.any_name
        hooks.add((str(handler.reason), str(handler.id), str(handler.selector.group), str(resource)))
    return hooks


def registered(objects: Objects) -> set[Hook]:
    kinds = {"ValidatingWebhookConfiguration": "validating", "MutatingWebhookConfiguration": "mutating"}
    return {(kinds[o["kind"]], hook["clientConfig"]["service"]["path"].lstrip("/"), group, resource)
            for o in objects if o["kind"] in kinds for hook in o["webhooks"]
            for rule in hook["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}


def test_chart_registers_every_served_handler_and_nothing_else(render: Callable[..., Objects]) -> None:
    assert registered(render({"webhooks": {"certificate": {"mode": "helm"}}})) == served()


def test_webhook_list_file_matches_the_served_handlers() -> None:
    data = yaml.safe_load((ROOT / "deploy" / "helm" / "caldera" / "files" / "webhooks.yaml").read_text())
    listed = {(kind, hook["id"], hook["apiGroup"], resource)
              for kind in ("validating", "mutating") for hook in data[kind] for resource in hook["resources"]}
    assert listed == served()
