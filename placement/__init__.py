"""Topology-aware gang placement: the gang model, `solve(snapshot, gangs, options) -> Plan` (CP-SAT with
a greedy warm start), the placement controller (`placement.controller`) and the Volcano extender.

`placement.solve` and friends load lazily, so importing a submodule does not pull in OR-Tools.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "solve": "placement.solver",
    "SolveOptions": "placement.solver",
    "Plan": "placement.plan",
    "Snapshot": "placement.snapshot",
    "Gang": "placement.model",
    "RoleReplica": "placement.model",
    "PodRequest": "placement.model",
    "TopologyPolicy": "placement.model",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'placement' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
