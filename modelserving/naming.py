"""Object names, exactly as Kthena derives them (`utils/utils.go`)."""

from __future__ import annotations

import re

_ORDINAL = re.compile(r"^(.*)-(\d+)$")


def group_name(ms_name: str, ordinal: int) -> str:
    """ServingGroup `<ms>-<ordinal>`, e.g. `sample-0`."""
    return f"{ms_name}-{ordinal}"


def role_id(role: str, index: int) -> str:
    """Role replica `<role>-<index>`, e.g. `prefill-1`."""
    return f"{role}-{index}"


def pod_name(group: str, role_replica: str, pod_index: int) -> str:
    """Pod `<group>-<role>-<j>-<k>`; k=0 is the entry pod, 1..workerReplicas the workers."""
    return f"{group}-{role_replica}-{pod_index}"


def service_name(group: str, role_replica: str) -> str:
    """The headless Service of a role replica is named like its entry pod."""
    return pod_name(group, role_replica, 0)


def controller_revision_name(ms_name: str, revision: str) -> str:
    return f"{ms_name}-{revision}"


def ordinal_of(name: str) -> int:
    """The trailing ordinal of `sample-3` or `prefill-1`; -1 when there is none."""
    match = _ORDINAL.match(name)
    return int(match.group(2)) if match else -1
