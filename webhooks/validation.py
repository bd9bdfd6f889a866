"""Admission validation: the rules of Kthena's validating webhooks, as pure functions.

`validate_object(obj)` is what the webhook and `caldera validate` run: the model's structural
checks (unknown fields, types, enums, limits, one-of rules), then the cross-field rules of the
kind. `validate_transition(old, new)` adds the update-only rules (CEL transition rules).
Every function returns a list of `FieldError(path, reason)`; empty means valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from autoscaler.api import (
    AutoscalingPolicy,
    AutoscalingPolicyBehavior,
    AutoscalingPolicyBinding,
    AutoscalingPolicyMetric,
    DisaggregatedTarget,
    HeterogeneousTarget,
    HomogeneousTarget,
    MetricSource,
    Target,
)
from caldera.k8s.quantity import parse_quantity
from caldera.k8s.types import parse_duration, resolve_int_or_percent
from modelserving.api import ModelServing, PodTemplateSpec
from router.api import ModelRoute, ModelServer, StringMatch
from router.providers import adapters
from router.providers.api import ExternalModelProvider
from webhooks.errors import FieldError, Path, from_validation_error
from webhooks.kinds import BY_KIND, resource_for

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1035_MAX = 63
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_BEHAVIOR_SECONDS = 30 * 60

M = TypeVar("M", bound=BaseModel)


def dns1035_problems(value: str) -> list[str]:
    problems = []
    if len(value) > DNS1035_MAX:
        problems.append(f"must be no more than {DNS1035_MAX} characters (is {len(value)})")
    if not DNS1035_LABEL.match(value):
        problems.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character"
        )
    return problems


def label_key_problems(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        problems.append(f"label key prefix {prefix!r} must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        problems.append(f"label key name {name!r} must be 1-63 alphanumerics, '-', '_' or '.', alphanumeric at both ends")
    return problems


def label_value_problems(value: str) -> list[str]:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return [f"label value {value!r} must be at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends"]
    return []


def _labels(labels: dict[str, str] | None, path: Path, *, required: bool) -> list[FieldError]:
    if not labels:
        return [path.error("labels must contain at least one label")] if required else []
    errors = []
    for key, value in labels.items():
        errors += [path.key(key).error(problem) for problem in label_key_problems(key)]
        errors += [path.key(key).error(problem) for problem in label_value_problems(value)]
    return errors


# ---------------------------------------------------------------- ModelServing


def _pod_template(template: PodTemplateSpec, path: Path) -> list[FieldError]:
    errors = []
    containers = template.spec.containers
    if not containers:
        errors.append(path.child("spec").child("containers").error("at least one container is required"))
    seen: set[str] = set()
    for j, container in enumerate([*containers, *(template.spec.init_containers or [])]):
        is_init = j >= len(containers)
        cpath = path.child("spec").child("initContainers" if is_init else "containers")
        cpath = cpath.index(j - len(containers) if is_init else j)
        if container.name in seen:
            errors.append(cpath.child("name").error(f"duplicate container name {container.name!r}"))
        seen.add(container.name)
        image = container.image
        if image is not None and (not image.strip() or " " in image):
            errors.append(
                cpath.child("image").error(f"invalid container image reference {image!r}: empty or contains spaces")
            )
    return errors


def validate_model_serving(ms: ModelServing) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = ms.spec
    template = spec.template
    roles_path = Path("spec.template.roles")
    role_rolling = spec.rollout_strategy is not None and spec.rollout_strategy.type == "RoleRollingUpdate"

    # Every pod name the controller may generate, at its longest, must be a DNS-1035 label.
    if ms.metadata.name:
        for role in template.roles:
            generated = f"{ms.metadata.name}-{spec.replicas}-{role.name}-{role.replicas}-{role.worker_replicas}"
            problems = dns1035_problems(generated)
            if problems:
                errors.append(
                    Path("metadata.name").error(
                        f"generated name {generated!r} (for role {role.name!r}) is invalid: {'; '.join(problems)}; "
                        "shorten the ModelServing or role name"
                    )
                )

    for i, role in enumerate(template.roles):
        rpath = roles_path.index(i)
        for problem in dns1035_problems(role.name):
            errors.append(rpath.child("name").error(f"role name must be a valid DNS-1035 label: {problem}"))
        if role.worker_replicas > 0 and role.worker_template is None:
            errors.append(
                rpath.child("workerTemplate").error("workerTemplate is required when workerReplicas is greater than 0")
            )
        errors += _pod_template(role.entry_template, rpath.child("entryTemplate"))
        if role.worker_template is not None:
            errors += _pod_template(role.worker_template, rpath.child("workerTemplate"))
        if role.partition is not None:
            errors += _percent_at_most_100(role.partition, rpath.child("partition"))
            if not role_rolling:
                errors.append(
                    rpath.child("partition").error("partition is only valid when rolloutStrategy.type is RoleRollingUpdate")
                )
        if role_rolling:
            mpath = rpath.child("maxUnavailable")
            percent_errors = _percent_at_most_100(role.max_unavailable, mpath)
            errors += percent_errors
            if not percent_errors:
                value = resolve_int_or_percent(role.max_unavailable, role.replicas, round_up=False)
                if value == 0:
                    errors.append(mpath.error(f"maxUnavailable {role.max_unavailable!r} resolves to 0"))
                elif value > role.replicas:
                    errors.append(mpath.error(f"maxUnavailable cannot be greater than replicas ({role.replicas})"))

    rollout = spec.rollout_strategy
    if rollout is not None and rollout.rolling_update_configuration is not None:
        cpath = Path("spec.rolloutStrategy.rollingUpdateConfiguration")
        config = rollout.rolling_update_configuration
        if rollout.type == "RoleRollingUpdate":
            errors.append(
                cpath.error("rollingUpdateConfiguration is only valid when rolloutStrategy.type is ServingGroupRollingUpdate")
            )
        else:
            mpath = cpath.child("maxUnavailable")
            percent_errors = _percent_at_most_100(config.max_unavailable, mpath)
            errors += percent_errors
            if config.partition is not None:
                errors += _percent_at_most_100(config.partition, cpath.child("partition"))
            if not percent_errors and resolve_int_or_percent(config.max_unavailable, spec.replicas, round_up=False) == 0:
                errors.append(
                    mpath.error(
                        f"maxUnavailable {config.max_unavailable!r} resolves to 0 for {spec.replicas} replicas"
                    )
                )

    if template.gang_policy is not None and template.gang_policy.min_role_replicas is not None:
        gpath = Path("spec.template.gangPolicy.minRoleReplicas")
        replicas_by_role = {role.name: role.replicas for role in template.roles}
        for role_name, minimum in template.gang_policy.min_role_replicas.items():
            if role_name not in replicas_by_role:
                errors.append(gpath.key(role_name).error(f"role {role_name} does not exist in template.roles"))
                continue
            if minimum < 0:
                errors.append(gpath.key(role_name).error(f"minRoleReplicas for role {role_name} must be non-negative"))
            if minimum > replicas_by_role[role_name]:
                errors.append(
                    gpath.key(role_name).error(
                        f"minRoleReplicas ({minimum}) for role {role_name} cannot exceed replicas "
                        f"({replicas_by_role[role_name]})"
                    )
                )

    topology = template.network_topology
    if topology is not None and topology.group_policy is not None and topology.role_policy is not None:
        group_tier = topology.group_policy.highest_tier_allowed
        role_tier = topology.role_policy.highest_tier_allowed
        if group_tier is not None and role_tier is not None and role_tier > group_tier:
            errors.append(
                Path("spec.template.networkTopology.rolePolicy.highestTierAllowed").error(
                    f"a role ({role_tier}) cannot span a higher tier than its ServingGroup ({group_tier})"
                )
            )

    role_names = {role.name for role in template.roles}
    plugin_names: set[str] = set()
    for i, plugin in enumerate(spec.plugins or []):
        ppath = Path("spec.plugins").index(i)
        if plugin.name in plugin_names:
            errors.append(ppath.child("name").error(f"duplicate plugin name {plugin.name!r}"))
        plugin_names.add(plugin.name)
        for j, role_name in enumerate((plugin.scope.roles if plugin.scope else None) or []):
            if role_name not in role_names:
                errors.append(
                    ppath.child("scope").child("roles").index(j).error(f"role {role_name} does not exist in template.roles")
                )

    rollout_type = rollout.type if rollout is not None else "ServingGroupRollingUpdate"
    if spec.recovery_policy == "ServingGroupRecreate" and rollout_type == "RoleRollingUpdate":
        errors.append(
            Path("spec.rolloutStrategy.type").error(
                "incompatible recoveryPolicy and rolloutStrategy.type: ServingGroupRecreate cannot be combined with "
                "RoleRollingUpdate; valid pairs: (ServingGroupRecreate, ServingGroupRollingUpdate) or "
                "(RoleRecreate, RoleRollingUpdate)"
            )
        )
    return errors


def _percent_at_most_100(value: int | str, path: Path) -> list[FieldError]:
    if isinstance(value, str) and int(value[:-1]) > 100:
        return [path.error(f"{value!r} must be a valid percent value (0-100)")]
    return []


# ---------------------------------------------------------------- autoscaling


def _metrics(metrics: Iterable[AutoscalingPolicyMetric], path: Path) -> list[FieldError]:
    errors = []
    seen: set[str] = set()
    for i, metric in enumerate(metrics):
        mpath = path.index(i)
        if metric.target <= 0:
            errors.append(mpath.child("targetValue").error("metric target value must be greater than 0"))
        name_field = "name" if metric.name is not None else "metricName"
        if metric.key in seen:
            errors.append(mpath.child(name_field).error(f"duplicate metric name {metric.key} is not allowed"))
        seen.add(metric.key)
    return errors


def _target_ref(kind: str | None, name: str | None, path: Path) -> list[FieldError]:
    errors = []
    if kind and kind != "ModelServing":
        errors.append(path.child("kind").error(f"targetRef.kind must be ModelServing, but got {kind}"))
    if not name:
        errors.append(path.child("name").error("targetRef.name must be set"))
    return errors


def _metric_sources(
    sources: dict[str, MetricSource] | None, metric_names: set[str] | None, path: Path
) -> list[FieldError]:
    errors = []
    for key in sources or {}:
        if metric_names is not None and key not in metric_names:
            errors.append(path.key(key).error(f"metricSources key {key!r} does not match any metric name"))
    return errors


def _target(target: Target, metric_names: set[str] | None, path: Path) -> list[FieldError]:
    errors = _target_ref(target.target_ref.kind, target.target_ref.name, path.child("targetRef"))
    if target.sub_targets is not None:
        spath = path.child("subTargets")
        if target.sub_targets.kind != "Role":
            errors.append(spath.child("kind").error(f"subTargets.kind must be Role, but got {target.sub_targets.kind!r}"))
        if not target.sub_targets.name:
            errors.append(spath.child("name").error("subTargets.name must name a role"))
    errors += _metric_sources(target.metric_sources, metric_names, path.child("metricSources"))
    return errors


def _bounds(minimum: int, maximum: int, path: Path) -> list[FieldError]:
    if minimum > maximum:
        return [path.child("minReplicas").error(f"minReplicas ({minimum}) must be <= maxReplicas ({maximum})")]
    return []


def _homogeneous(target: HomogeneousTarget, metric_names: set[str] | None, path: Path) -> list[FieldError]:
    return _target(target.target, metric_names, path.child("target")) + _bounds(
        target.min_replicas, target.max_replicas, path
    )


def _heterogeneous(target: HeterogeneousTarget, metric_names: set[str] | None, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, param in enumerate(target.params):
        ppath = path.child("params").index(i)
        errors += _target(param.target, metric_names, ppath.child("target"))
        errors += _bounds(param.min_replicas, param.max_replicas, ppath)
        name = param.target.target_ref.name or ""
        role = param.target.sub_targets.name if param.target.sub_targets else None
        key = f"{name}/{role}" if role else name
        if name and key in seen:
            errors.append(ppath.child("target").child("targetRef").child("name").error(f"{key} appears in two params"))
        seen.add(key)
    return errors


def _disaggregated(target: DisaggregatedTarget, spec_metrics: list[AutoscalingPolicyMetric], path: Path) -> list[FieldError]:
    errors = _target_ref(target.target_ref.kind, target.target_ref.name, path.child("targetRef"))
    for role_name, param in target.roles.items():
        rpath = path.child("roles").key(role_name)
        if not role_name:
            errors.append(path.child("roles").error("role name must not be empty"))
            continue
        errors += _bounds(param.min_replicas, param.max_replicas, rpath)
        if param.fixed:
            continue
        if not param.metrics and not spec_metrics:
            errors.append(
                rpath.child("metrics").error("metrics must be set on every non-fixed role when spec.metrics is empty")
            )
        errors += _metrics(param.metrics or [], rpath.child("metrics"))
        effective = {m.key for m in (param.metrics or spec_metrics)}
        if effective and not param.metric_sources:
            errors.append(
                rpath.child("metricSources").error(
                    "metricSources must be set on every non-fixed role when metrics are configured"
                )
            )
        errors += _metric_sources(param.metric_sources, effective, rpath.child("metricSources"))
    ratio = target.ratio_constraint
    if ratio is not None:
        cpath = path.child("ratioConstraint")
        for field_name, role_name in (("numeratorRole", ratio.numerator_role), ("denominatorRole", ratio.denominator_role)):
            if role_name not in target.roles:
                errors.append(cpath.child(field_name).error(f"{field_name} {role_name!r} must exist in roles"))
        if ratio.numerator_role == ratio.denominator_role:
            errors.append(cpath.child("denominatorRole").error("numeratorRole and denominatorRole must differ"))
        low, high = parse_quantity(ratio.min_ratio), parse_quantity(ratio.max_ratio)
        if low < 0 or high <= 0:
            errors.append(cpath.error("minRatio must be >= 0 and maxRatio must be > 0"))
        elif low > high:
            errors.append(cpath.child("minRatio").error("minRatio must be <= maxRatio"))
        num, den = target.roles.get(ratio.numerator_role), target.roles.get(ratio.denominator_role)
        if num is not None and den is not None and ratio.numerator_role != ratio.denominator_role:
            if (num.min_replicas == 0) != (den.min_replicas == 0):
                errors.append(cpath.error("ratio roles must be scalable-to-zero together"))
            too_high = den.max_replicas > 0 and Decimal(num.min_replicas) / den.max_replicas > high
            too_low = den.min_replicas > 0 and Decimal(num.max_replicas) / den.min_replicas < low
            if 0 <= low <= high and high > 0 and (too_high or too_low):
                errors.append(cpath.error("ratioConstraint is not achievable within role replica bounds"))
    return errors


def _behavior(behavior: AutoscalingPolicyBehavior | None) -> list[FieldError]:
    if behavior is None:
        return []
    path = Path("spec.behavior")
    checks: list[tuple[Path, str | None, str]] = []
    if behavior.scale_down is not None:
        down = path.child("scaleDown")
        checks += [
            (down.child("period"), behavior.scale_down.period, "stable policy period"),
            (down.child("stabilizationWindow"), behavior.scale_down.stabilization_window, "stable policy stabilization window"),
        ]
    if behavior.scale_up is not None:
        up = path.child("scaleUp")
        stable, panic = behavior.scale_up.stable_policy, behavior.scale_up.panic_policy
        if stable is not None:
            checks += [
                (up.child("stablePolicy").child("period"), stable.period, "stable policy period"),
                (
                    up.child("stablePolicy").child("stabilizationWindow"),
                    stable.stabilization_window,
                    "stable policy stabilization window",
                ),
            ]
        if panic is not None:
            checks += [
                (up.child("panicPolicy").child("period"), panic.period, "panic policy period"),
                (up.child("panicPolicy").child("panicModeHold"), panic.panic_mode_hold, "panic policy panic mode hold"),
            ]
    return [
        fpath.error(f"{what} must be between 0 and 30 minutes (got {value})")
        for fpath, value, what in checks
        if value is not None and parse_duration(value) > MAX_BEHAVIOR_SECONDS
    ]


def validate_autoscaling_policy(policy: AutoscalingPolicy) -> list[FieldError]:
    spec = policy.spec
    metrics = spec.metrics or []
    errors = _metrics(metrics, Path("spec.metrics"))
    names = {m.key for m in metrics}
    if spec.disaggregated_target is None and not metrics:
        errors.append(Path("spec.metrics").error("at least one metric must be set"))
    if spec.homogeneous_target is not None:
        errors += _homogeneous(spec.homogeneous_target, names, Path("spec.homogeneousTarget"))
    if spec.heterogeneous_target is not None:
        errors += _heterogeneous(spec.heterogeneous_target, names, Path("spec.heterogeneousTarget"))
    if spec.disaggregated_target is not None:
        errors += _disaggregated(spec.disaggregated_target, metrics, Path("spec.disaggregatedTarget"))
    errors += _behavior(spec.behavior)
    return errors


def validate_autoscaling_policy_binding(binding: AutoscalingPolicyBinding) -> list[FieldError]:
    spec = binding.spec
    errors = []
    if not spec.policy_ref.name:
        errors.append(Path("spec.policyRef.name").error("policyRef.name must name an AutoscalingPolicy"))
    # Metric names live in the referenced policy, which an offline check cannot see.
    if spec.homogeneous_target is not None:
        errors += _homogeneous(spec.homogeneous_target, None, Path("spec.homogeneousTarget"))
    if spec.heterogeneous_target is not None:
        errors += _heterogeneous(spec.heterogeneous_target, None, Path("spec.heterogeneousTarget"))
    return errors


# ---------------------------------------------------------------- router


def _regex(match: StringMatch | None, path: Path) -> list[FieldError]:
    if match is None or match.regex is None:
        return []
    try:
        re.compile(match.regex)
    except re.error as exc:
        return [path.child("regex").error(f"invalid regular expression: {exc}")]
    return []


def validate_model_route(route: ModelRoute) -> list[FieldError]:
    spec = route.spec
    errors = []
    for i, adapter in enumerate(spec.lora_adapters or []):
        if not adapter:
            errors.append(Path("spec.loraAdapters").index(i).error("lora adapter name cannot be an empty string"))
    for i, rule in enumerate(spec.rules):
        rpath = Path("spec.rules").index(i)
        total = 0
        for j, target in enumerate(rule.target_models):
            tpath = rpath.child("targetModels").index(j)
            total += target.weight
            if target.external_model_provider_name and spec.lora_adapters:
                errors.append(tpath.child("externalModelProviderName").error("lora routes must target modelServerName"))
        if total == 0:
            errors.append(rpath.child("targetModels").error("total weight must be greater than zero"))
        if rule.model_match is not None:
            for key, match in (rule.model_match.headers or {}).items():
                errors += _regex(match, rpath.child("modelMatch").child("headers").key(key))
            errors += _regex(rule.model_match.uri, rpath.child("modelMatch").child("uri"))
    return errors


def validate_model_server(server: ModelServer) -> list[FieldError]:
    selector = server.spec.workload_selector
    path = Path("spec.workloadSelector")
    errors = _labels(selector.match_labels, path.child("matchLabels"), required=True)
    if selector.pd_group is not None:
        gpath = path.child("pdGroup")
        if not selector.pd_group.group_key:
            errors.append(gpath.child("groupKey").error("groupKey must be specified"))
        errors += _labels(selector.pd_group.prefill_labels, gpath.child("prefillLabels"), required=True)
        errors += _labels(selector.pd_group.decode_labels, gpath.child("decodeLabels"), required=True)
    return errors


def validate_external_model_provider(provider: ExternalModelProvider) -> list[FieldError]:
    """Kthena's provider webhook: https-only base URL, safe static headers, a complete secretRef."""
    spec = provider.spec
    path = Path("spec")
    errors = []
    problem = adapters.base_url_problem(spec.base_url)
    if problem:
        errors.append(path.child("baseURL").error(problem))
    for name, reason in adapters.header_problems(spec.headers):
        errors.append(path.child("headers").key(name).error(reason))
    if spec.auth is not None:
        ref = path.child("auth").child("secretRef")
        if not spec.auth.secret_ref.name:
            errors.append(ref.child("name").error("secret name is required"))
        if not spec.auth.secret_ref.key:
            errors.append(ref.child("key").error("secret key is required"))
        if spec.auth.secret_ref.optional:
            errors.append(ref.child("optional").error("optional must be false or unset: the credential is required"))
    return errors


# ---------------------------------------------------------------- dispatch

RULES: dict[str, Callable[[Any], list[FieldError]]] = {
    "ModelServing": validate_model_serving,
    "AutoscalingPolicy": validate_autoscaling_policy,
    "AutoscalingPolicyBinding": validate_autoscaling_policy_binding,
    "ModelRoute": validate_model_route,
    "ModelServer": validate_model_server,
    "ExternalModelProvider": validate_external_model_provider,
}


def parse(model: type[M], obj: dict[str, Any]) -> tuple[M | None, list[FieldError]]:
    """The model, or the structural errors that prevent building it."""
    try:
        return model.model_validate(obj), []
    except ValidationError as exc:
        return None, from_validation_error(model, exc)


def validate_object(obj: Any) -> list[FieldError]:
    """Every problem with one manifest of a Caldera kind."""
    if not isinstance(obj, dict):
        return [FieldError("<root>", f"a manifest must be a mapping, got {type(obj).__name__}")]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    resource = resource_for(api_version, kind)
    if resource is None:
        if kind in BY_KIND:
            expected = BY_KIND[kind].api_version
            return [FieldError("apiVersion", f"{kind} is served as {expected}, not {api_version!r}")]
        known = ", ".join(sorted(BY_KIND))
        return [FieldError("kind", f"{kind!r} is not a Caldera kind (expected one of {known})")]
    model, errors = parse(resource.model, obj)
    if model is None:
        return errors
    return RULES[resource.kind](model)


def validate_transition(old: dict[str, Any], new: dict[str, Any]) -> list[FieldError]:
    """Update-only rules (Kthena's CEL transition rules)."""
    errors = []
    kind = new.get("kind")
    if kind == "ModelServing":
        old_gang = ((old.get("spec") or {}).get("template") or {}).get("gangPolicy")
        new_gang = ((new.get("spec") or {}).get("template") or {}).get("gangPolicy")
        if old_gang is not None and new_gang is None:
            errors.append(FieldError("spec.template.gangPolicy", "gangPolicy is required once set"))
        elif (
            old_gang is not None
            and new_gang is not None
            and old_gang.get("minRoleReplicas") is not None
            and old_gang.get("minRoleReplicas") != new_gang.get("minRoleReplicas")
        ):
            errors.append(FieldError("spec.template.gangPolicy.minRoleReplicas", "minRoleReplicas is immutable"))
    if kind == "ModelRoute":
        old_name = (old.get("spec") or {}).get("modelName")
        if old_name is not None and old_name != (new.get("spec") or {}).get("modelName"):
            errors.append(FieldError("spec.modelName", "modelName is immutable"))
    return errors
