"""From the API objects to the algorithms' plain configuration (pure).

Kthena's fields map one to one; what Kthena's API has no field for is read from
annotations on the AutoscalingPolicy (or the binding, which wins), all under
``autoscaling.caldera.dev/``:

=====================================  ========================================================
``stable-window``                      Knative stable window (duration, default 60s)
``panic-window``                       Knative panic window (default 10% of the stable window)
``max-scale-up-rate``                  Knative rate (default 1000)
``max-scale-down-rate``                Knative rate (default 2)
``scale-to-zero``                      "true" allows 0 replicas when minReplicas is 0
``stale-after``                        metrics older than this never scale down (default 60s)
``heterogeneous-algorithm``            ``optimizer`` (default) or ``kthena`` (the block heuristic)
``churn`` / ``headroom``               optimiser churn penalty (0.1) and capacity headroom (0)
``startup-delay`` / ``forecast-z``     forecast demand this far ahead, margin in error std-devs
``saturation-metric``                  pod gauge (e.g. vllm:num_requests_waiting); when > 0 a
                                       variant's load per ready replica teaches its capacity
``scrape-pods``                        ``entry`` (default, as Kthena) or ``all``
``quantile``                           histogram quantile for pod metrics (0.95)
``prometheus-auth-secret``             Secret with ``token`` or ``username``/``password``
``sla`` / ``sla-port``                 SLA mode of a disaggregated target (JSON, see ``sla.py``)
=====================================  ========================================================

On a variant's ModelServing: ``capacity`` (demand units one replica carries, default 1)
and ``gpu-type`` (else the pods' ``nvidia.com/gpu.product`` node selector).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from autoscaler.api import (
    AutoscalingPolicyMetric,
    AutoscalingPolicySpec,
    AutoscalingPolicyStablePolicy,
    MetricEndpoint,
    Target,
    duration_seconds,
    effective_behavior,
)
from autoscaler.kpa import KpaConfig, PanicRule, RateRule
from autoscaler.sla import SlaMode, sla_mode_from_json

PREFIX = "autoscaling.caldera.dev/"


def annotation(annotations: Mapping[str, str], key: str) -> str | None:
    return annotations.get(PREFIX + key)


def _float(annotations: Mapping[str, str], key: str, default: float) -> float:
    raw = annotation(annotations, key)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"annotation {PREFIX}{key}: want a number, got {raw!r}") from exc


def _duration(annotations: Mapping[str, str], key: str, default: float) -> float:
    raw = annotation(annotations, key)
    if raw is None:
        return default
    try:
        return duration_seconds(raw)
    except ValueError as exc:
        raise ValueError(f"annotation {PREFIX}{key}: want a duration like 30s or 1m, got {raw!r}") from exc


def _rule(p: AutoscalingPolicyStablePolicy) -> RateRule:
    return RateRule(instances=p.instances, percent=p.percent, period_s=max(duration_seconds(p.period), 1.0),
                    select_policy=p.select_policy,
                    stabilization_window_s=duration_seconds(p.stabilization_window))


def kpa_config(spec: AutoscalingPolicySpec, min_replicas: int, max_replicas: int,
               annotations: Mapping[str, str]) -> KpaConfig:
    behavior = effective_behavior(spec.behavior)
    assert behavior.scale_up is not None and behavior.scale_down is not None
    stable, panic = behavior.scale_up.stable_policy, behavior.scale_up.panic_policy
    assert stable is not None and panic is not None
    stable_window = _duration(annotations, "stable-window", 60.0)
    hold = duration_seconds(panic.panic_mode_hold)
    scale_to_zero = annotation(annotations, "scale-to-zero") == "true"
    return KpaConfig(
        min_replicas=min_replicas,
        max_replicas=max(max_replicas, 1),
        tolerance_percent=spec.tolerance_percent,
        stable_window_s=stable_window,
        panic_window_s=_duration(annotations, "panic-window", stable_window / 10),
        max_scale_up_rate=_float(annotations, "max-scale-up-rate", 1000.0),
        max_scale_down_rate=_float(annotations, "max-scale-down-rate", 2.0),
        scale_up=_rule(stable),
        scale_down=_rule(behavior.scale_down),
        # Kthena's webhook default hold of 0s would end panic on the next calm tick; 0
        # means Knative's rule instead (a full stable window without over-threshold load).
        panic=PanicRule(percent=panic.percent, period_s=max(duration_seconds(panic.period), 1.0),
                        threshold_percent=panic.panic_threshold_percent, hold_s=hold if hold > 0 else None),
        scale_to_zero=scale_to_zero,
        stale_after_s=_duration(annotations, "stale-after", 60.0),
    )


@dataclass(frozen=True)
class PodSource:
    port: int = 8100
    path: str = "/metrics"
    labels: Mapping[str, str] | None = None
    metric: str | None = None  # the exposed name when it differs from the policy's key


@dataclass(frozen=True)
class PromSource:
    server_url: str
    query: str


@dataclass(frozen=True)
class MetricPlan:
    name: str
    target: float
    source: PodSource | PromSource


def _selector_labels(selector: object) -> dict[str, str]:
    labels = getattr(selector, "match_labels", None)
    return dict(labels or {})


def metric_plans(metrics: list[AutoscalingPolicyMetric] | None, target: Target | None,
                 endpoint: MetricEndpoint | None = None,
                 sources: Mapping[str, object] | None = None) -> list[MetricPlan]:
    """Each metric with its target and where to read it (pod scrape by default)."""
    if not metrics:
        raise ValueError("spec.metrics: at least one metric with a targetValue is required")
    per_metric = dict(sources or {})
    if target is not None and target.metric_sources:
        per_metric.update(target.metric_sources)
    endpoint = endpoint or (target.metric_endpoint if target is not None else None)
    out: list[MetricPlan] = []
    for m in metrics:
        value = float(m.target)
        if value <= 0:
            raise ValueError(f"metric {m.key!r}: targetValue must be > 0, got {m.target_value}")
        src = per_metric.get(m.key)
        pod = getattr(src, "pod", None)
        prom = getattr(src, "prometheus", None)
        source: PodSource | PromSource
        if prom is not None:
            source = PromSource(prom.server_url, prom.query)
        elif pod is not None:
            source = PodSource(pod.port, pod.uri, _selector_labels(pod.label_selector), pod.name)
        elif endpoint is not None:
            source = PodSource(endpoint.port, endpoint.uri, _selector_labels(endpoint.label_selector))
        else:
            source = PodSource()
        out.append(MetricPlan(m.key, value, source))
    return out


Algorithm = Literal["optimizer", "kthena"]


@dataclass(frozen=True)
class HeterogeneousOptions:
    algorithm: Algorithm = "optimizer"
    churn: float = 0.1
    headroom: float = 0.0
    startup_delay_s: float = 0.0  # > 0: provision for a forecast this far ahead (demand.py)
    forecast_z: float = 2.0  # as the benchmark (demand.py)
    saturation_metric: str | None = None  # a pod gauge > 0 when requests wait: learn capacity then


def heterogeneous_options(annotations: Mapping[str, str]) -> HeterogeneousOptions:
    algo = annotation(annotations, "heterogeneous-algorithm") or "optimizer"
    if algo not in ("optimizer", "kthena"):
        raise ValueError(f"annotation {PREFIX}heterogeneous-algorithm: want optimizer or kthena, got {algo!r}")
    return HeterogeneousOptions(algo, _float(annotations, "churn", 0.1),  # type: ignore[arg-type]
                                _float(annotations, "headroom", 0.0),
                                _duration(annotations, "startup-delay", 0.0),
                                _float(annotations, "forecast-z", 2.0),
                                annotation(annotations, "saturation-metric"))


def variant_capacity(annotations: Mapping[str, str]) -> float:
    value = _float(annotations, "capacity", 1.0)
    if value <= 0:
        raise ValueError(f"annotation {PREFIX}capacity must be > 0, got {value}")
    return value


def scrape_all_pods(annotations: Mapping[str, str]) -> bool:
    value = annotation(annotations, "scrape-pods") or "entry"
    if value not in ("entry", "all"):
        raise ValueError(f"annotation {PREFIX}scrape-pods: want entry or all, got {value!r}")
    return value == "all"


def quantile(annotations: Mapping[str, str]) -> float:
    q = _float(annotations, "quantile", 0.95)
    if not 0 < q < 1:
        raise ValueError(f"annotation {PREFIX}quantile must be within (0, 1), got {q}")
    return q


def parse_ratio(value: object) -> float:
    """A ratio bound (a Kubernetes quantity such as "1", "0.5" or "500m") as a float."""
    from caldera.k8s.quantity import parse_quantity

    return float(parse_quantity(value))  # type: ignore[arg-type]


def sla_mode(annotations: Mapping[str, str]) -> SlaMode | None:
    """The SLA mode of a disaggregated target, from the annotation `sla` (JSON), if set."""
    raw = annotation(annotations, "sla")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"annotation {PREFIX}sla: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"annotation {PREFIX}sla: want a JSON object")
    return sla_mode_from_json(data)


def sla_port(annotations: Mapping[str, str]) -> int:
    return int(_float(annotations, "sla-port", 8000))
