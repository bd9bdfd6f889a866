"""ModelServing (`workload.serving.volcano.sh/v1alpha1`): Kthena's API, field for field.

A ModelServing runs `spec.replicas` ServingGroups; each ServingGroup runs every role of
`spec.template.roles`, `role.replicas` times; each role replica is one entry pod plus
`role.workerReplicas` worker pods. Structure, defaults, enums and limits live here (and
in the generated CRD); cross-field admission rules live in `webhooks.validation`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from caldera.k8s.meta import Condition, ObjectMeta, TemplateMetadata
from caldera.k8s.pod import PodSpec
from caldera.k8s.resources import add, pod_requests, scale
from caldera.k8s.types import Int32, Int64, IntOrPercent, KubeModel, cel

GROUP = "workload.serving.volcano.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ROLE_NAME_PATTERN = r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
ROLE_NAME_MAX_LENGTH = 12
DNS1035_LABEL_PATTERN = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_ROLES = 4

RecoveryPolicy = Literal["ServingGroupRecreate", "RoleRecreate", "None"]
RolloutStrategyType = Literal["ServingGroupRollingUpdate", "RoleRollingUpdate"]
NetworkTopologyMode = Literal["hard", "soft"]
PluginType = Literal["BuiltIn"]
PluginTarget = Literal["All", "Entry", "Worker"]
ModelServingConditionType = Literal["Available", "Progressing", "UpdateInProgress"]


class NetworkTopologySpec(KubeModel):
    """Volcano's `scheduling/v1beta1.NetworkTopologySpec`, as Kthena embeds it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.highestTierAllowed) && has(self.highestTierName))",
                    "highestTierAllowed and highestTierName cannot be set simultaneously",
                )
            ]
        }
    )

    mode: NetworkTopologyMode = "hard"
    # Tiers are numbered from 1 (the HyperNodes right above the nodes); 0 would allow nothing.
    highest_tier_allowed: Annotated[int | None, Field(ge=1)] = None
    highest_tier_name: Annotated[str | None, Field(max_length=253)] = None

    @model_validator(mode="after")
    def _one_tier_bound(self) -> NetworkTopologySpec:
        if self.highest_tier_allowed is not None and self.highest_tier_name is not None:
            raise ValueError("highestTierAllowed and highestTierName cannot be set simultaneously")
        return self


class NetworkTopology(KubeModel):
    """Topology constraints for a whole ServingGroup (groupPolicy) and for each role (rolePolicy)."""

    group_policy: NetworkTopologySpec | None = None
    role_policy: NetworkTopologySpec | None = None


class GangPolicy(KubeModel):
    """Minimum role replicas that must be schedulable together; all roles when unset."""

    min_role_replicas: Annotated[
        dict[str, Int32] | None,
        Field(
            max_length=MAX_ROLES,
            json_schema_extra={"x-kubernetes-validations": [cel("self == oldSelf", "minRoleReplicas is immutable")]},
        ),
    ] = None


class PodTemplateSpec(KubeModel):
    """A pod template: labels/annotations and a full Kubernetes PodSpec."""

    metadata: TemplateMetadata | None = None
    spec: PodSpec


class RollingUpdateConfiguration(KubeModel):
    """maxUnavailable (rounded down, must not resolve to 0) and partition (rounded up)."""

    max_unavailable: IntOrPercent = 1
    partition: IntOrPercent | None = None


class Role(KubeModel):
    """One role of a ServingGroup (e.g. prefill, decode): `replicas` x (1 entry + N worker) pods."""

    # Kthena checks this in its webhook only; the CRD enforces it too, so objects created while
    # the webhook is not installed cannot make the controller generate pods it cannot create.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.workerReplicas == 0 || has(self.workerTemplate)",
                    "workerTemplate is required when workerReplicas is greater than 0",
                    fieldPath=".workerTemplate",
                )
            ]
        }
    )

    name: Annotated[
        str,
        Field(
            max_length=ROLE_NAME_MAX_LENGTH,
            pattern=ROLE_NAME_PATTERN,
            json_schema_extra={
                "x-kubernetes-validations": [
                    cel(f"self.matches('{DNS1035_LABEL_PATTERN}')", "role name must be a valid DNS-1035 label")
                ]
            },
        ),
    ]
    replicas: Annotated[Int32, Field(ge=0)] = 1
    entry_template: PodTemplateSpec
    worker_replicas: Annotated[Int32, Field(ge=0)]
    worker_template: PodTemplateSpec | None = None
    # Inlined RollingUpdateConfiguration; only used by RoleRollingUpdate.
    max_unavailable: IntOrPercent = 1
    partition: IntOrPercent | None = None

    @property
    def pods_per_replica(self) -> int:
        """Pods in one replica of this role: the entry pod plus its workers."""
        return 1 + self.worker_replicas

    def requests_per_replica(self) -> dict[str, Decimal]:
        """Resources one replica of this role requests: its entry pod plus its worker pods."""
        entry = pod_requests(self.entry_template.spec)
        if self.worker_template is None or self.worker_replicas == 0:
            return entry
        return add(entry, scale(pod_requests(self.worker_template.spec), self.worker_replicas))


class ServingGroup(KubeModel):
    """The template of one ServingGroup: its roles and how they are gang-scheduled and placed."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!has(oldSelf.gangPolicy) || has(self.gangPolicy)", "gangPolicy is required once set"),
                cel(
                    "!has(self.gangPolicy) || !has(self.gangPolicy.minRoleReplicas) || "
                    "self.gangPolicy.minRoleReplicas.all(k, self.roles.exists(r, r.name == k && "
                    "self.gangPolicy.minRoleReplicas[k] >= 0 && self.gangPolicy.minRoleReplicas[k] <= r.replicas))",
                    "every gangPolicy.minRoleReplicas key must name a role, with 0 <= minRoleReplicas <= its replicas",
                    fieldPath=".gangPolicy.minRoleReplicas",
                ),
            ]
        }
    )

    restart_grace_period_seconds: Int64 = 0
    gang_policy: GangPolicy | None = None
    network_topology: NetworkTopology | None = None
    roles: Annotated[
        list[Role],
        Field(
            min_length=1,
            max_length=MAX_ROLES,
            json_schema_extra={
                "x-kubernetes-validations": [
                    cel("self.all(x, self.exists_one(y, y.name == x.name))", "roles name must be unique")
                ]
            },
        ),
    ]

    @model_validator(mode="after")
    def _unique_role_names(self) -> ServingGroup:
        names = [role.name for role in self.roles]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"roles name must be unique: {', '.join(duplicates)} repeated")
        return self

    def requests(self) -> dict[str, Decimal]:
        """Resources one ServingGroup requests: every replica of every role."""
        return add(*(scale(role.requests_per_replica(), role.replicas) for role in self.roles))

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(f"no role named {name!r} (roles: {', '.join(r.name for r in self.roles)})")


class PluginScope(KubeModel):
    roles: list[str] | None = None
    target: PluginTarget | None = None


class PluginSpec(KubeModel):
    """A built-in plugin that tweaks pods before creation (e.g. lws-standard-labels)."""

    name: str
    type: PluginType = "BuiltIn"
    config: Annotated[Any, Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})] = None
    scope: PluginScope | None = None


class RolloutStrategy(KubeModel):
    type: RolloutStrategyType = "ServingGroupRollingUpdate"
    rolling_update_configuration: RollingUpdateConfiguration | None = None


class ModelServingSpec(KubeModel):
    replicas: Annotated[Int32, Field(ge=0)] = 1
    scheduler_name: str = "volcano"
    plugins: list[PluginSpec] | None = None
    template: ServingGroup
    rollout_strategy: RolloutStrategy | None = None
    recovery_policy: RecoveryPolicy = "RoleRecreate"


class ModelServingStatus(KubeModel):
    observed_generation: Int64 | None = None
    replicas: Int32 | None = None
    current_replicas: Int32 | None = None
    updated_replicas: Int32 | None = None
    available_replicas: Int32 | None = None
    current_revision: str | None = None
    update_revision: str | None = None
    conditions: list[Condition] | None = None
    label_selector: str | None = None


class ModelServing(KubeModel):
    """workload.serving.volcano.sh/v1alpha1 ModelServing."""

    api_version: Literal["workload.serving.volcano.sh/v1alpha1"] = "workload.serving.volcano.sh/v1alpha1"
    kind: Literal["ModelServing"] = "ModelServing"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelServingSpec
    status: ModelServingStatus | None = None
