"""Resource vectors in integer base units.

CPU is held in millicores, memory and storage in bytes, every other (extended) resource as a
plain integer count, so that arithmetic is exact and cheap. `Resources` is a plain dict; the
helpers below never mutate their arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from kubernetes.utils.quantity import parse_quantity

Resources = dict[str, int]

CPU = "cpu"
MEMORY = "memory"
GPU = "nvidia.com/gpu"
PODS = "pods"

# Resources whose base unit is a thousandth of the Kubernetes unit.
_MILLI = {CPU}


def parse_resource(name: str, value: object) -> int:
    """One Kubernetes quantity ("500m", "1Gi", 8) in Caldera base units."""
    try:
        quantity = parse_quantity(value) if not isinstance(value, Decimal) else value
    except (ValueError, InvalidOperation, TypeError) as exc:
        raise ValueError(f"resource {name!r}: {value!r} is not a Kubernetes quantity") from exc
    if name in _MILLI:
        quantity = quantity * 1000
    return int(quantity.to_integral_value(rounding="ROUND_CEILING"))


def parse_resources(raw: Mapping[str, object] | None) -> Resources:
    """A Kubernetes resource list (`requests`, `allocatable`) in base units."""
    if not raw:
        return {}
    return {name: parse_resource(name, value) for name, value in raw.items()}


def from_milli(name: str, milli: float) -> int:
    """A Volcano milli-unit scalar (8 GPUs are 8000) in Caldera base units."""
    if name == CPU:
        return int(milli)
    if name == MEMORY:
        return int(milli)  # Volcano keeps memory in bytes already.
    return round(milli / 1000)


def add(a: Mapping[str, int], b: Mapping[str, int]) -> Resources:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def sub(a: Mapping[str, int], b: Mapping[str, int]) -> Resources:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) - value
    return out


def scale(a: Mapping[str, int], factor: int) -> Resources:
    return {key: value * factor for key, value in a.items()}


def total(items: Iterable[Mapping[str, int]]) -> Resources:
    out: Resources = {}
    for item in items:
        for key, value in item.items():
            out[key] = out.get(key, 0) + value
    return out


def fits(request: Mapping[str, int], free: Mapping[str, int]) -> bool:
    """True when every requested amount is available (absent resources count as zero)."""
    return all(value <= 0 or free.get(key, 0) >= value for key, value in request.items())


def shortfall(request: Mapping[str, int], free: Mapping[str, int]) -> Resources:
    """The resources (and amounts) by which `request` exceeds `free`."""
    return {
        key: value - free.get(key, 0)
        for key, value in request.items()
        if value > 0 and free.get(key, 0) < value
    }


def copies_that_fit(request: Mapping[str, int], free: Mapping[str, int]) -> int:
    """How many copies of `request` fit into `free` (a large number when it asks for nothing)."""
    best = 1 << 30
    for key, value in request.items():
        if value > 0:
            best = min(best, max(0, free.get(key, 0)) // value)
    return best


def format_resources(res: Mapping[str, int]) -> str:
    """Human-readable, Kubernetes-like rendering ("cpu=4, memory=16Gi, nvidia.com/gpu=8")."""
    parts = []
    for key in sorted(res):
        value = res[key]
        if key == CPU:
            parts.append(f"cpu={value / 1000:g}")
        elif key == MEMORY or key.endswith("storage"):
            parts.append(f"{key}={value / 2**30:.4g}Gi")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)
