"""Admission defaulting, as pure functions: what the mutating webhook adds to a manifest.

Two sources, applied only where a field is absent (nothing present is ever changed):

* the CRD defaults of the models (replicas 1, schedulerName volcano, weight 100, ...), which
  the API server also applies, so objects read back equal what the models produce;
* Kthena's AutoscalingPolicy mutator: an absent `behavior`, `scaleUp`, `stablePolicy`,
  `panicPolicy` or `scaleDown` gets the table defaults in `autoscaler.api.DEFAULT_*`, and a
  missing stabilization window gets 5m (scale-down) or 0s (scale-up).
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

from autoscaler.api import AutoscalingPolicy, effective_behavior
from webhooks.kinds import resource_for


class FieldDefault(NamedTuple):
    """A field the defaulting adds: its path (`spec.behavior.scaleDown`) and its value."""

    path: str
    value: Any

    def __str__(self) -> str:
        return f"{self.path}: defaulted to {self.value!r}"


def _complete(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest with every default filled in, or None if it is not a valid Caldera object."""
    resource = resource_for(obj.get("apiVersion"), obj.get("kind"))
    if resource is None:
        return None
    try:
        model = resource.model.model_validate(obj)
    except ValueError:
        return None  # the validating webhook reports it
    if isinstance(model, AutoscalingPolicy):
        model.spec.behavior = effective_behavior(model.spec.behavior)
    full = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    full.pop("status", None)
    return full


def _additions(current: Any, full: Any, path: str) -> list[FieldDefault]:
    if isinstance(current, dict) and isinstance(full, dict):
        found = []
        for key, value in full.items():
            child = f"{path}.{key}" if path else key
            if key not in current:
                found.append(FieldDefault(child, value))
            else:
                found += _additions(current[key], value, child)
        return found
    if isinstance(current, list) and isinstance(full, list) and len(current) == len(full):
        return [item for i, (a, b) in enumerate(zip(current, full, strict=True)) for item in _additions(a, b, f"{path}[{i}]")]
    return []


def defaults_for(obj: dict[str, Any]) -> list[FieldDefault]:
    """Every field the mutating webhook would add to this manifest."""
    full = _complete(obj)
    if full is None:
        return []
    return _additions(obj, full, "")


def _fill(current: Any, full: Any) -> None:
    if isinstance(current, dict) and isinstance(full, dict):
        for key, value in full.items():
            if key not in current:
                current[key] = copy.deepcopy(value)
            else:
                _fill(current[key], value)
    elif isinstance(current, list) and isinstance(full, list) and len(current) == len(full):
        for a, b in zip(current, full, strict=True):
            _fill(a, b)


def apply_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """Add the defaults to `obj` in place (and return it); present fields are never changed."""
    full = _complete(obj)
    if full is not None:
        _fill(obj, full)
    return obj
