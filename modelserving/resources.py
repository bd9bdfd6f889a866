"""Resource quantities: parse, add, scale and compare, for PodGroup minResources."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

ResourceTotals = dict[str, Decimal]

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def container_requests(pod_spec: Mapping[str, Any]) -> ResourceTotals:
    """Sum of the requests of the regular containers (what Kthena counts for minResources)."""
    total: ResourceTotals = {}
    for container in pod_spec.get("containers") or []:
        for name, value in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] = total.get(name, Decimal(0)) + parse_quantity(value)
    return total


def add(into: ResourceTotals, other: Mapping[str, Decimal], times: int = 1) -> None:
    for name, value in other.items():
        into[name] = into.get(name, Decimal(0)) + value * times


def format_quantity(value: Decimal) -> str:
    """A canonical quantity string: binary suffixes for whole multiples of 1Ki, milli for fractions."""
    if value == value.to_integral_value():
        whole = int(value)
        for suffix, size in _BINARY:
            if whole >= size and whole % size == 0:
                return f"{whole // size}{suffix}"
        return str(whole)
    milli = value * 1000
    if milli == milli.to_integral_value():
        return f"{int(milli)}m"
    return str(value.normalize())


def to_resource_list(totals: Mapping[str, Decimal]) -> dict[str, str]:
    return {name: format_quantity(value) for name, value in sorted(totals.items())}


def same_resources(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Semantic equality of two ResourceLists ("1Gi" == "1073741824"); zero entries count as absent."""
    def norm(rl: Mapping[str, Any] | None) -> dict[str, Decimal]:
        return {k: parse_quantity(v) for k, v in (rl or {}).items() if parse_quantity(v) != 0}
    return norm(a) == norm(b)


