"""AutoscalingPolicy and AutoscalingPolicyBinding (`workload.serving.volcano.sh/v1alpha1`).

Both Kthena generations are accepted by one set of models:

* v0.4: an `AutoscalingPolicy` holds only metrics (`metricName`), tolerance and behavior; an
  `AutoscalingPolicyBinding` names it in `policyRef` and carries exactly one of
  `homogeneousTarget` / `heterogeneousTarget` (targets may scale one role via `subTargets`
  and scrape pods via `metricEndpoint`).
* v1.0: a single `AutoscalingPolicy` carries metrics (`name`), behavior and at most one of
  `homogeneousTarget`, `heterogeneousTarget` or `disaggregatedTarget` (per-role scaling with
  an optional prefill/decode ratio); metrics come from `metricSources` (pod or Prometheus).

Field defaults are the CRD (kubebuilder) defaults. The mutating webhook's defaults for an
absent `behavior`, `scaleUp`, `scaleUp.stablePolicy`, `scaleUp.panicPolicy` or `scaleDown`
are `DEFAULT_*` below; `effective_behavior` applies them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from caldera.k8s.meta import Condition, LabelSelector, LocalObjectReference, ObjectMeta, ObjectReference
from caldera.k8s.quantity import parse_quantity
from caldera.k8s.types import Duration, Int32, Int64, KubeModel, Quantity, cel, parse_duration

GROUP = "workload.serving.volcano.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MAX_REPLICAS_LIMIT = 1_000_000

SelectPolicy = Literal["Or", "And"]
ScalingMode = Literal["Stable", "Panic"]

ReplicaFloor = Annotated[Int32, Field(ge=0, le=MAX_REPLICAS_LIMIT)]
ReplicaCeiling = Annotated[Int32, Field(ge=1, le=MAX_REPLICAS_LIMIT)]


class AutoscalingPolicyMetric(KubeModel):
    """A metric and its per-replica target. `name` (v1.0) or `metricName` (v0.4), not both."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.name) != has(self.metricName)", "exactly one of name or metricName must be set")
            ]
        }
    )

    name: Annotated[str | None, Field(min_length=1)] = None
    metric_name: Annotated[str | None, Field(min_length=1)] = None
    target_value: Quantity

    @model_validator(mode="after")
    def _one_name(self) -> AutoscalingPolicyMetric:
        if (self.name is None) == (self.metric_name is None):
            raise ValueError("exactly one of name or metricName must be set")
        return self

    @property
    def key(self) -> str:
        """The metric's name, whichever generation spelled it."""
        return self.name or self.metric_name or ""

    @property
    def target(self) -> Decimal:
        return parse_quantity(self.target_value)


class AutoscalingPolicyStablePolicy(KubeModel):
    """Rate limits for stable-mode scale-up and for scale-down."""

    instances: Annotated[Int32, Field(ge=0)] = 1
    percent: Annotated[Int32, Field(ge=0, le=1000)] = 100
    period: Duration = "15s"
    select_policy: SelectPolicy = "Or"
    stabilization_window: Duration | None = None


class AutoscalingPolicyPanicPolicy(KubeModel):
    """Panic mode: entered when a metric exceeds `panicThresholdPercent` of its target."""

    percent: Annotated[Int32, Field(ge=0, le=1000)] = 1000
    # Required by Kthena's CRD, but the seed design's manifests omit it; absent means 0s.
    period: Duration | None = None
    panic_threshold_percent: Annotated[Int32, Field(ge=110, le=1000)] = 200
    panic_mode_hold: Duration = "60s"


class AutoscalingPolicyScaleUpPolicy(KubeModel):
    stable_policy: AutoscalingPolicyStablePolicy | None = None
    panic_policy: AutoscalingPolicyPanicPolicy | None = None


class AutoscalingPolicyBehavior(KubeModel):
    scale_up: AutoscalingPolicyScaleUpPolicy | None = None
    scale_down: AutoscalingPolicyStablePolicy | None = None


# The mutating webhook's defaults for parts of `behavior` that are absent.
DEFAULT_SCALE_DOWN = AutoscalingPolicyStablePolicy(
    instances=0, percent=100, period="1m", select_policy="Or", stabilization_window="5m"
)
DEFAULT_SCALE_UP_STABLE = AutoscalingPolicyStablePolicy(
    instances=4, percent=100, period="1m", select_policy="Or", stabilization_window="0s"
)
DEFAULT_SCALE_UP_PANIC = AutoscalingPolicyPanicPolicy(
    percent=0, period="0s", panic_threshold_percent=200, panic_mode_hold="0s"
)
DEFAULT_SCALE_DOWN_STABILIZATION_WINDOW = "5m"
DEFAULT_SCALE_UP_STABILIZATION_WINDOW = "0s"


def effective_behavior(behavior: AutoscalingPolicyBehavior | None) -> AutoscalingPolicyBehavior:
    """`behavior` with every absent part filled as Kthena's mutating webhook fills it."""
    behavior = behavior or AutoscalingPolicyBehavior()
    scale_down = behavior.scale_down or DEFAULT_SCALE_DOWN
    if scale_down.stabilization_window is None:
        scale_down = scale_down.model_copy(update={"stabilization_window": DEFAULT_SCALE_DOWN_STABILIZATION_WINDOW})
    scale_up = behavior.scale_up or AutoscalingPolicyScaleUpPolicy()
    stable = scale_up.stable_policy or DEFAULT_SCALE_UP_STABLE
    if stable.stabilization_window is None:
        stable = stable.model_copy(update={"stabilization_window": DEFAULT_SCALE_UP_STABILIZATION_WINDOW})
    panic = scale_up.panic_policy or DEFAULT_SCALE_UP_PANIC
    if panic.period is None:
        panic = panic.model_copy(update={"period": "0s"})
    return AutoscalingPolicyBehavior(
        scale_up=AutoscalingPolicyScaleUpPolicy(stable_policy=stable, panic_policy=panic),
        scale_down=scale_down,
    )


class PodMetricSource(KubeModel):
    """Scrape each target pod's Prometheus text endpoint."""

    name: str | None = None
    uri: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    port: Annotated[Int32, Field(ge=1, le=65535)] = 8100
    label_selector: LabelSelector | None = None


class PrometheusAuth(KubeModel):
    """Reserved by Kthena (empty; not honoured there either)."""


class PrometheusMetricSource(KubeModel):
    """An instant PromQL query returning one scalar or a one-sample vector."""

    server_url: Annotated[str, Field(min_length=1, alias="serverURL", json_schema_extra={"format": "uri"})]
    query: Annotated[str, Field(min_length=1)]
    auth: PrometheusAuth | None = None


class MetricSource(KubeModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.pod) || has(self.prometheus)", "one metric source backend config is required"),
                cel("!(has(self.pod) && has(self.prometheus))", "pod and prometheus configs are mutually exclusive"),
            ]
        }
    )

    pod: PodMetricSource | None = None
    prometheus: PrometheusMetricSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MetricSource:
        if self.pod is None and self.prometheus is None:
            raise ValueError("one metric source backend config is required")
        if self.pod is not None and self.prometheus is not None:
            raise ValueError("pod and prometheus configs are mutually exclusive")
        return self


class MetricEndpoint(KubeModel):
    """v0.4: where to scrape the target's pods."""

    uri: str = "/metrics"
    port: Int32 = 8100
    label_selector: LabelSelector | None = None


class SubTarget(KubeModel):
    """v0.4: scale one role of the target ModelServing (`kind: Role`)."""

    kind: str | None = None
    name: str | None = None


class Target(KubeModel):
    """The ModelServing to watch and scale (v1.0 `metricSources`, v0.4 `subTargets`/`metricEndpoint`)."""

    target_ref: ObjectReference
    metric_sources: dict[str, MetricSource] | None = None
    sub_targets: SubTarget | None = None
    metric_endpoint: MetricEndpoint | None = None


class HomogeneousTarget(KubeModel):
    target: Target
    min_replicas: ReplicaFloor
    max_replicas: ReplicaCeiling


class HeterogeneousTargetParam(KubeModel):
    target: Target
    cost: Annotated[Int32, Field(ge=0)] = 0
    min_replicas: ReplicaFloor
    max_replicas: ReplicaCeiling


class HeterogeneousTarget(KubeModel):
    """Several ModelServings serving one model at different costs, scaled together at least cost."""

    params: Annotated[list[HeterogeneousTargetParam], Field(min_length=1)]
    cost_expansion_rate_percent: Annotated[Int32, Field(ge=0)] = 200


class RoleScalingParam(KubeModel):
    min_replicas: ReplicaFloor
    max_replicas: ReplicaCeiling
    metrics: Annotated[list[AutoscalingPolicyMetric] | None, Field(min_length=1)] = None
    metric_sources: dict[str, MetricSource] | None = None

    @property
    def fixed(self) -> bool:
        """A role with equal bounds is held at that size and needs no metrics."""
        return self.max_replicas > 0 and self.min_replicas == self.max_replicas


class RoleRatioConstraint(KubeModel):
    """replicas[numeratorRole] / replicas[denominatorRole] stays within [minRatio, maxRatio]."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.numeratorRole != self.denominatorRole", "numeratorRole and denominatorRole must differ")
            ]
        }
    )

    numerator_role: str
    denominator_role: str
    min_ratio: Quantity
    max_ratio: Quantity


class DisaggregatedTarget(KubeModel):
    """Per-role scaling of one ModelServing (e.g. prefill and decode), optionally ratio-bound."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.ratioConstraint) || size(self.roles) >= 2",
                    "roles must contain at least two entries when ratioConstraint is configured",
                )
            ]
        }
    )

    target_ref: ObjectReference
    roles: Annotated[dict[str, RoleScalingParam], Field(min_length=1, max_length=2)]
    ratio_constraint: RoleRatioConstraint | None = None

    @model_validator(mode="after")
    def _ratio_needs_two_roles(self) -> DisaggregatedTarget:
        if self.ratio_constraint is not None and len(self.roles) < 2:
            raise ValueError("roles must contain at least two entries when ratioConstraint is configured")
        return self


_AT_MOST_ONE_TARGET = (
    "(has(self.homogeneousTarget) ? 1 : 0) + (has(self.heterogeneousTarget) ? 1 : 0)"
    " + (has(self.disaggregatedTarget) ? 1 : 0) <= 1"
)


class AutoscalingPolicySpec(KubeModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    _AT_MOST_ONE_TARGET,
                    "at most one of homogeneousTarget, heterogeneousTarget or disaggregatedTarget may be set",
                )
            ]
        }
    )

    tolerance_percent: Annotated[Int32, Field(ge=0, le=100)] = 10
    metrics: list[AutoscalingPolicyMetric] | None = None
    behavior: AutoscalingPolicyBehavior | None = None
    homogeneous_target: HomogeneousTarget | None = None
    heterogeneous_target: HeterogeneousTarget | None = None
    disaggregated_target: DisaggregatedTarget | None = None

    @model_validator(mode="after")
    def _at_most_one_target(self) -> AutoscalingPolicySpec:
        if len(self.targets()) > 1:
            raise ValueError(
                "at most one of homogeneousTarget, heterogeneousTarget or disaggregatedTarget may be set "
                f"(got {', '.join(self.targets())})"
            )
        return self

    def targets(self) -> list[str]:
        """The target fields that are set (camelCase names)."""
        present = {
            "homogeneousTarget": self.homogeneous_target,
            "heterogeneousTarget": self.heterogeneous_target,
            "disaggregatedTarget": self.disaggregated_target,
        }
        return [name for name, value in present.items() if value is not None]


class TargetScalingStatus(KubeModel):
    name: str | None = None
    current_replicas: Int32
    desired_replicas: Int32
    mode: ScalingMode | None = None
    last_scale_time: str | None = None


class RoleRatioStatus(KubeModel):
    numerator_role: str
    denominator_role: str
    current_ratio: str | None = None


class DisaggregatedScalingStatus(KubeModel):
    roles: list[TargetScalingStatus]
    ratio_status: RoleRatioStatus | None = None
    ratio_adjusted: bool | None = None


class AutoscalingPolicyStatus(KubeModel):
    observed_generation: Int64 | None = None
    conditions: list[Condition] | None = None
    homogeneous_status: TargetScalingStatus | None = None
    disaggregated_status: DisaggregatedScalingStatus | None = None
    heterogeneous_status: list[TargetScalingStatus] | None = None


class AutoscalingPolicy(KubeModel):
    """workload.serving.volcano.sh/v1alpha1 AutoscalingPolicy (v0.4 and v1.0 forms)."""

    api_version: Literal["workload.serving.volcano.sh/v1alpha1"] = "workload.serving.volcano.sh/v1alpha1"
    kind: Literal["AutoscalingPolicy"] = "AutoscalingPolicy"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AutoscalingPolicySpec
    status: AutoscalingPolicyStatus | None = None


class AutoscalingPolicyBindingSpec(KubeModel):
    """v0.4: binds a policy to exactly one homogeneous or heterogeneous target."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.heterogeneousTarget) != has(self.homogeneousTarget)",
                    "Either heterogeneousTarget or homogeneousTarget must be set, but not both.",
                )
            ]
        }
    )

    policy_ref: LocalObjectReference
    heterogeneous_target: HeterogeneousTarget | None = None
    homogeneous_target: HomogeneousTarget | None = None

    @model_validator(mode="after")
    def _exactly_one_target(self) -> AutoscalingPolicyBindingSpec:
        if (self.heterogeneous_target is None) == (self.homogeneous_target is None):
            raise ValueError("Either heterogeneousTarget or homogeneousTarget must be set, but not both.")
        return self


class AutoscalingPolicyBindingStatus(KubeModel):
    """Empty in Kthena v0.4; conditions and observed state are Caldera's additions."""

    observed_generation: Int64 | None = None
    conditions: list[Condition] | None = None
    homogeneous_status: TargetScalingStatus | None = None
    heterogeneous_status: list[TargetScalingStatus] | None = None


class AutoscalingPolicyBinding(KubeModel):
    """workload.serving.volcano.sh/v1alpha1 AutoscalingPolicyBinding (Kthena v0.4)."""

    api_version: Literal["workload.serving.volcano.sh/v1alpha1"] = "workload.serving.volcano.sh/v1alpha1"
    kind: Literal["AutoscalingPolicyBinding"] = "AutoscalingPolicyBinding"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AutoscalingPolicyBindingSpec
    status: AutoscalingPolicyBindingStatus | None = None


def duration_seconds(value: str | None, default: float = 0.0) -> float:
    """Seconds in an optional duration field."""
    return default if value is None else parse_duration(value)
