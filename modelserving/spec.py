"""A typed, defaulted reading of a ModelServing object (the dict the API server returns).

The controller's pure core works on these dataclasses; pod templates stay plain dicts
because they go back to the API server as they are. Defaults follow Kthena
(`model_serving_types.go`): replicas 1, schedulerName volcano, role replicas 1,
ServingGroupRollingUpdate with maxUnavailable 1 and partition 0, recovery RoleRecreate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from modelserving.labels import VOLCANO_SCHEDULER

Json = dict[str, Any]

RolloutType = Literal["ServingGroupRollingUpdate", "RoleRollingUpdate"]
RecoveryPolicy = Literal["ServingGroupRecreate", "RoleRecreate", "None"]
ROLLOUT_TYPES: tuple[str, ...] = ("ServingGroupRollingUpdate", "RoleRollingUpdate")
RECOVERY_POLICIES: tuple[str, ...] = ("ServingGroupRecreate", "RoleRecreate", "None")


class SpecError(ValueError):
    """A ModelServing field has a value the controller cannot act on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


IntOrPercent = int | str


def scaled_value(value: IntOrPercent | None, total: int, *, round_up: bool, default: int, path: str) -> int:
    """Resolve an int-or-percent against `total` the way Kubernetes' intstr does."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise SpecError(path, f"expected an integer or a percentage, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SpecError(path, f"must not be negative, got {value}")
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = int(text[:-1])
        except ValueError as exc:
            raise SpecError(path, f"expected a percentage like '25%', got {value!r}") from exc
        if percent < 0:
            raise SpecError(path, f"must not be negative, got {value!r}")
        scaled = percent * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    try:
        number = int(text)
    except ValueError as exc:
        raise SpecError(path, f"expected an integer or a percentage, got {value!r}") from exc
    if number < 0:
        raise SpecError(path, f"must not be negative, got {value!r}")
    return number


@dataclass(frozen=True)
class Role:
    name: str
    replicas: int
    worker_replicas: int
    entry_template: Json
    worker_template: Json | None
    max_unavailable: IntOrPercent | None = None
    partition: IntOrPercent | None = None

    @property
    def pods_per_replica(self) -> int:
        return 1 + self.worker_replicas

    def raw_for_hash(self) -> Json:
        """The role without the fields that scale or pace it (Kthena's revision_util.go)."""
        return {
            "name": self.name,
            "workerReplicas": self.worker_replicas,
            "entryTemplate": self.entry_template,
            "workerTemplate": self.worker_template,
        }


@dataclass(frozen=True)
class Template:
    roles: tuple[Role, ...]
    restart_grace_period_seconds: int = 0
    gang_policy: Json | None = None
    network_topology: Json | None = None

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    @property
    def min_role_replicas(self) -> Mapping[str, int]:
        if not self.gang_policy:
            return {}
        return dict(self.gang_policy.get("minRoleReplicas") or {})

    @property
    def group_policy(self) -> Json | None:
        return (self.network_topology or {}).get("groupPolicy")

    @property
    def role_policy(self) -> Json | None:
        return (self.network_topology or {}).get("rolePolicy")

    def with_role_replicas(self, replicas: Mapping[str, int]) -> Template:
        """The same template with role replica counts taken from `replicas` (scaling is not an update)."""
        roles = tuple(
            Role(r.name, replicas.get(r.name, r.replicas), r.worker_replicas, r.entry_template,
                 r.worker_template, r.max_unavailable, r.partition)
            for r in self.roles
        )
        return Template(roles, self.restart_grace_period_seconds, self.gang_policy, self.network_topology)


@dataclass(frozen=True)
class ModelServing:
    name: str
    namespace: str
    uid: str
    generation: int
    replicas: int
    scheduler_name: str
    template: Template
    raw_template: Json
    rollout_type: RolloutType = "ServingGroupRollingUpdate"
    max_unavailable: IntOrPercent | None = None
    partition: IntOrPercent | None = None
    recovery_policy: RecoveryPolicy = "RoleRecreate"
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    status: Json = field(default_factory=dict)
    plugins: tuple[str, ...] = ()  # names of built-in plugins

    @property
    def uses_podgroups(self) -> bool:
        return self.scheduler_name == VOLCANO_SCHEDULER

    def resolved_max_unavailable(self) -> int:
        value = scaled_value(self.max_unavailable, self.replicas, round_up=False, default=1,
                             path="spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable")
        # A budget of 0 would stall every rollout; Kthena's webhook rejects it, we clamp.
        return max(1, value)

    def resolved_partition(self) -> int:
        return scaled_value(self.partition, self.replicas, round_up=True, default=0,
                            path="spec.rolloutStrategy.rollingUpdateConfiguration.partition")

    def role_max_unavailable(self, role: Role) -> int:
        index = self._role_index(role.name)
        value = scaled_value(role.max_unavailable, role.replicas, round_up=False, default=1,
                             path=f"spec.template.roles[{index}].maxUnavailable")
        return max(1, value)

    def role_partition(self, role: Role) -> int:
        index = self._role_index(role.name)
        return scaled_value(role.partition, role.replicas, round_up=True, default=0,
                            path=f"spec.template.roles[{index}].partition")

    def _role_index(self, name: str) -> int:
        return next((i for i, r in enumerate(self.template.roles) if r.name == name), 0)

    @property
    def current_revision(self) -> str | None:
        value = self.status.get("currentRevision")
        return str(value) if value else None


def _int(value: Any, path: str, default: int, minimum: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"expected an integer, got {value!r}")
    if value < minimum:
        raise SpecError(path, f"must be at least {minimum}, got {value}")
    return value


def parse_template(raw: Mapping[str, Any], path: str = "spec.template") -> Template:
    roles_raw = raw.get("roles")
    if not isinstance(roles_raw, list) or not roles_raw:
        raise SpecError(f"{path}.roles", "at least one role is required")
    roles: list[Role] = []
    seen: set[str] = set()
    for i, r in enumerate(roles_raw):
        rpath = f"{path}.roles[{i}]"
        if not isinstance(r, Mapping):
            raise SpecError(rpath, "expected an object")
        name = r.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{rpath}.name", "a role name is required")
        if name in seen:
            raise SpecError(f"{rpath}.name", f"duplicate role name {name!r}")
        seen.add(name)
        entry = r.get("entryTemplate")
        if not isinstance(entry, Mapping) or not isinstance(entry.get("spec"), Mapping):
            raise SpecError(f"{rpath}.entryTemplate.spec", "an entry pod template is required")
        workers = _int(r.get("workerReplicas"), f"{rpath}.workerReplicas", 0)
        worker = r.get("workerTemplate")
        if workers > 0 and (not isinstance(worker, Mapping) or not isinstance(worker.get("spec"), Mapping)):
            raise SpecError(f"{rpath}.workerTemplate", "required when workerReplicas > 0")
        roles.append(Role(
            name=name,
            replicas=_int(r.get("replicas"), f"{rpath}.replicas", 1),
            worker_replicas=workers,
            entry_template=dict(entry),
            worker_template=dict(worker) if isinstance(worker, Mapping) else None,
            max_unavailable=r.get("maxUnavailable"),
            partition=r.get("partition"),
        ))
    gang = raw.get("gangPolicy")
    if gang is not None:
        mins = (gang or {}).get("minRoleReplicas") or {}
        for role_name, value in mins.items():
            if role_name not in seen:
                raise SpecError(f"{path}.gangPolicy.minRoleReplicas.{role_name}", "names no role of this template")
            _int(value, f"{path}.gangPolicy.minRoleReplicas.{role_name}", 0)
    return Template(
        roles=tuple(roles),
        restart_grace_period_seconds=_int(raw.get("restartGracePeriodSeconds"),
                                          f"{path}.restartGracePeriodSeconds", 0),
        gang_policy=dict(gang) if gang else None,
        network_topology=dict(raw["networkTopology"]) if raw.get("networkTopology") else None,
    )


def parse_modelserving(obj: Mapping[str, Any]) -> ModelServing:
    """Read a ModelServing object; raises SpecError naming the offending field."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    raw_template = spec.get("template")
    if not isinstance(raw_template, Mapping):
        raise SpecError("spec.template", "a ServingGroup template is required")
    rollout = spec.get("rolloutStrategy") or {}
    rollout_type = rollout.get("type") or "ServingGroupRollingUpdate"
    if rollout_type not in ROLLOUT_TYPES:
        raise SpecError("spec.rolloutStrategy.type", f"must be one of {', '.join(ROLLOUT_TYPES)}, got {rollout_type!r}")
    rolling = rollout.get("rollingUpdateConfiguration") or {}
    recovery = spec.get("recoveryPolicy") or "RoleRecreate"
    if recovery not in RECOVERY_POLICIES:
        raise SpecError("spec.recoveryPolicy", f"must be one of {', '.join(RECOVERY_POLICIES)}, got {recovery!r}")
    ms = ModelServing(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or "default"),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        replicas=_int(spec.get("replicas"), "spec.replicas", 1),
        scheduler_name=str(spec.get("schedulerName") or VOLCANO_SCHEDULER),
        template=parse_template(raw_template),
        raw_template=dict(raw_template),
        rollout_type=cast(RolloutType, rollout_type),
        max_unavailable=rolling.get("maxUnavailable"),
        partition=rolling.get("partition"),
        recovery_policy=cast(RecoveryPolicy, recovery),
        annotations=dict(meta.get("annotations") or {}),
        labels=dict(meta.get("labels") or {}),
        status=dict(obj.get("status") or {}),
        plugins=tuple(str(p.get("name")) for p in spec.get("plugins") or [] if isinstance(p, Mapping)),
    )
    # Resolve once so a bad int-or-percent is reported up front.
    ms.resolved_max_unavailable()
    ms.resolved_partition()
    for role in ms.template.roles:
        ms.role_max_unavailable(role)
        ms.role_partition(role)
    return ms
