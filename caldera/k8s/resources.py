"""Effective resource requests of pods, as the scheduler counts them (exact Decimals).

A container's request for a resource is its `requests` value, or its `limits` value when
only a limit is given (the API server defaults requests to limits). A pod requests the sum
over its app containers and restartable (sidecar) init containers, or the largest one-shot
init container plus the sidecars started before it if that is larger, plus `overhead`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from caldera.k8s.pod import Container, PodSpec
from caldera.k8s.quantity import parse_quantity

GPU = "nvidia.com/gpu"

Resources = dict[str, Decimal]


def container_requests(container: Container) -> Resources:
    resources = container.resources
    if resources is None:
        return {}
    merged: dict[str, str] = {**(resources.limits or {}), **(resources.requests or {})}
    return {name: parse_quantity(value) for name, value in merged.items()}


def add(*parts: Mapping[str, Decimal]) -> Resources:
    total: Resources = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, Decimal(0)) + value
    return total


def scale(resources: Mapping[str, Decimal], factor: int) -> Resources:
    return {name: value * factor for name, value in resources.items()}


def _maximum(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> Resources:
    return {name: max(a.get(name, Decimal(0)), b.get(name, Decimal(0))) for name in {*a, *b}}


def pod_requests(spec: PodSpec) -> Resources:
    """What one pod of this spec asks the scheduler for, per resource name."""
    sidecars: Resources = {}
    init_peak: Resources = {}
    for init in spec.init_containers or []:
        if init.restart_policy == "Always":
            sidecars = add(sidecars, container_requests(init))
        else:
            init_peak = _maximum(init_peak, add(sidecars, container_requests(init)))
    running = add(sidecars, *(container_requests(c) for c in spec.containers))
    overhead = {name: parse_quantity(value) for name, value in (spec.overhead or {}).items()}
    return add(_maximum(running, init_peak), overhead)


def total(pods: Iterable[Mapping[str, Decimal]]) -> Resources:
    return add(*pods)
