"""Homogeneous scaling: Knative KPA stable/panic windows with HPA-style behaviour.

One call of :func:`recommend` is one autoscaler tick. It is a pure function of the
configuration, the state carried from the previous tick and the tick's observations,
and returns the decision (with every input that produced it) and the next state.

Order of the stages, each named in the decision's ``reason``:

1. Fresh samples enter per-metric windows in replica units (``value / target``);
   missing or stale metrics are left out and mark the tick *incomplete*.
2. ``stable`` and ``panic`` are the window averages (Knative), maximum over metrics.
3. Tolerance: the stable recommendation keeps the current count when
   ``|stable - current| <= tolerance * current`` (Kthena compares ``stable/target``
   with 1 instead, so its deadband only works near one replica).
4. Knative rate limits: ``[floor(ready / maxScaleDownRate), ceil(ready * maxScaleUpRate)]``.
5. Panic starts or extends when ``panic / ready >= threshold`` and ends once no tick has
   been over the threshold for the hold (default: the stable window). In panic the
   count never goes down and grows by at most ``panic.percent`` per panic period.
6. Stable mode: HPA stabilization (up = min over the up window, down = max over the
   down window) and HPA per-period limits with ``Or`` (the larger change) or ``And``.
7. An incomplete tick never scales down; scale to zero only if enabled and only after
   the demand has been zero for the grace period; the bounds always win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Mode = Literal["Stable", "Panic"]
SelectPolicy = Literal["Or", "And"]

# Floats from averaging must not turn 3.0000000001 into 4 replicas.
_EPS = 1e-9


def ceil_units(x: float) -> int:
    return max(0, math.ceil(x - _EPS))


@dataclass(frozen=True)
class RateRule:
    """One direction of HPA-style behaviour (Kthena `stablePolicy` / `scaleDown`)."""

    instances: int = 4
    percent: float = 100.0
    period_s: float = 60.0
    select_policy: SelectPolicy = "Or"
    stabilization_window_s: float = 0.0

    def __post_init__(self) -> None:
        if self.instances < 0:
            raise ValueError(f"instances must be >= 0, got {self.instances}")
        if not 0 <= self.percent <= 1000:
            raise ValueError(f"percent must be within 0..1000, got {self.percent}")
        if self.period_s <= 0:
            raise ValueError(f"period must be > 0 seconds, got {self.period_s}")
        if self.select_policy not in ("Or", "And"):
            raise ValueError(f"selectPolicy must be Or or And, got {self.select_policy!r}")
        if self.stabilization_window_s < 0:
            raise ValueError(f"stabilizationWindow must be >= 0, got {self.stabilization_window_s}")


@dataclass(frozen=True)
class PanicRule:
    """Kthena `panicPolicy`: growth cap per period, entry threshold and hold."""

    percent: float = 1000.0
    period_s: float = 15.0
    threshold_percent: float = 200.0
    hold_s: float | None = None  # None: a full stable window, as Knative does

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 10000:
            raise ValueError(f"panicPolicy.percent must be within 0..10000, got {self.percent}")
        if self.period_s <= 0:
            raise ValueError(f"panicPolicy.period must be > 0 seconds, got {self.period_s}")
        if not 110 <= self.threshold_percent <= 1000:
            raise ValueError(
                f"panicThresholdPercent must be within 110..1000, got {self.threshold_percent}")
        if self.hold_s is not None and self.hold_s < 0:
            raise ValueError(f"panicModeHold must be >= 0, got {self.hold_s}")


@dataclass(frozen=True)
class KpaConfig:
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance_percent: float = 10.0
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_up: RateRule = field(default_factory=RateRule)
    scale_down: RateRule = field(
        default_factory=lambda: RateRule(instances=0, percent=100, period_s=60, stabilization_window_s=300))
    panic: PanicRule = field(default_factory=PanicRule)
    scale_to_zero: bool = False
    scale_to_zero_grace_s: float = 30.0
    stale_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"minReplicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(
                f"maxReplicas must be >= max(minReplicas, 1), got {self.max_replicas} "
                f"with minReplicas {self.min_replicas}")
        if not 0 <= self.tolerance_percent <= 100:
            raise ValueError(f"tolerancePercent must be within 0..100, got {self.tolerance_percent}")
        if self.stable_window_s <= 0:
            raise ValueError(f"stableWindow must be > 0 seconds, got {self.stable_window_s}")
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError(
                f"panicWindow must be within (0, stableWindow={self.stable_window_s}], got {self.panic_window_s}")
        if self.max_scale_up_rate <= 1:
            raise ValueError(f"maxScaleUpRate must be > 1, got {self.max_scale_up_rate}")
        if self.max_scale_down_rate <= 1:
            raise ValueError(f"maxScaleDownRate must be > 1, got {self.max_scale_down_rate}")
        if self.stale_after_s <= 0:
            raise ValueError(f"staleAfter must be > 0 seconds, got {self.stale_after_s}")

    @property
    def floor(self) -> int:
        """The lowest count the bounds allow; 0 only when scale to zero is on."""
        return self.min_replicas if self.scale_to_zero else max(self.min_replicas, 1)

    @property
    def panic_hold_s(self) -> float:
        return self.stable_window_s if self.panic.hold_s is None else self.panic.hold_s


@dataclass(frozen=True)
class MetricSample:
    """One metric at one tick. `value` is the total over the target's pods (or the
    single value of an external query); `target` is the value one replica should carry."""

    name: str
    target: float
    value: float | None
    observed_at: float | None
    missing_pods: int = 0  # Ready pods whose metrics could not be read

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"metric {self.name!r}: target must be > 0, got {self.target}")


@dataclass(frozen=True)
class Tick:
    now: float
    current_replicas: int
    ready_replicas: int
    metrics: tuple[MetricSample, ...]


@dataclass(frozen=True)
class KpaState:
    samples: tuple[tuple[str, float, float], ...] = ()  # (metric, time, replica units)
    recommendations: tuple[tuple[float, int], ...] = ()  # stable recommendations (time, count)
    scale_events: tuple[tuple[float, int], ...] = ()  # (time, change)
    panic_since: float | None = None
    last_over_threshold: float | None = None
    zero_since: float | None = None
    last_scale_time: float | None = None
    started: bool = False


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    mode: Mode
    reason: str
    inputs: dict[str, Any]

    @property
    def changed(self) -> bool:
        return self.desired != self.current


def is_fresh(sample: MetricSample, now: float, stale_after_s: float) -> bool:
    return (
        sample.value is not None
        and sample.observed_at is not None
        and math.isfinite(sample.value)
        and sample.value >= 0
        and now - sample.observed_at <= stale_after_s
    )


def replica_units(sample: MetricSample, current: int) -> float:
    """`value/target`, with HPA's rule for Ready pods that gave no metrics: on the way
    down count them at target, and if that flips the direction hold the count."""
    assert sample.value is not None
    units = sample.value / sample.target
    if sample.missing_pods and units < current:
        units = min(units + sample.missing_pods, float(current))
    return units


def _window_mean(samples: tuple[tuple[str, float, float], ...], name: str, now: float,
                 window: float) -> float | None:
    values = [v for n, t, v in samples if n == name and now - t < window]
    return sum(values) / len(values) if values else None


def _latest(samples: tuple[tuple[str, float, float], ...], name: str) -> float | None:
    values = [v for n, _, v in samples if n == name]
    return values[-1] if values else None


def _changed_within(events: tuple[tuple[float, int], ...], now: float, period: float, sign: int) -> int:
    return sum(d for t, d in events if now - t < period and d * sign > 0)


def scale_up_limit(rule: RateRule, current: int, events: tuple[tuple[float, int], ...], now: float) -> int:
    """HPA: the most replicas allowed now, counted from the replicas at the period start."""
    start = current - _changed_within(events, now, rule.period_s, +1)
    by_instances = start + rule.instances
    by_percent = ceil_units(start * (1 + rule.percent / 100))
    limit = max(by_instances, by_percent) if rule.select_policy == "Or" else min(by_instances, by_percent)
    return max(limit, 1)  # from zero, the first replica is always allowed


def scale_down_limit(rule: RateRule, current: int, events: tuple[tuple[float, int], ...], now: float) -> int:
    start = current - _changed_within(events, now, rule.period_s, -1)
    by_instances = start - rule.instances
    by_percent = math.floor(start * (1 - rule.percent / 100) + _EPS)
    limit = min(by_instances, by_percent) if rule.select_policy == "Or" else max(by_instances, by_percent)
    return max(limit, 0)


def recommend(config: KpaConfig, state: KpaState, tick: Tick) -> tuple[Decision, KpaState]:
    now, current = tick.now, tick.current_replicas
    ready = max(1, tick.ready_replicas)
    notes: list[str] = []

    # 1. windows
    samples = list(state.samples)
    stale: list[str] = []
    for m in tick.metrics:
        if is_fresh(m, now, config.stale_after_s):
            samples.append((m.name, now, replica_units(m, current)))
        else:
            stale.append(m.name)
    keep = tuple(s for s in samples if now - s[1] < config.stable_window_s)
    complete = not stale and bool(tick.metrics)

    # 2. stable and panic averages, max over metrics
    stable_raw: float | None = None
    panic_raw: float | None = None
    for name in dict.fromkeys(m.name for m in tick.metrics):
        s = _window_mean(keep, name, now, config.stable_window_s)
        p = _window_mean(keep, name, now, config.panic_window_s)
        if p is None:
            p = _latest(keep, name)
        if s is not None:
            stable_raw = s if stable_raw is None else max(stable_raw, s)
        if p is not None:
            panic_raw = p if panic_raw is None else max(panic_raw, p)

    inputs: dict[str, Any] = {
        "current": current, "ready": tick.ready_replicas,
        "metrics": {m.name: m.value for m in tick.metrics}, "stale": stale,
    }
    lo, hi = config.floor, config.max_replicas

    if stable_raw is None or panic_raw is None:
        desired = min(max(current, lo), hi)
        next_state = replace(state, samples=keep, started=True)
        return _finish(config, state, next_state, now, current, desired,
                       "Panic" if state.panic_since is not None else "Stable",
                       "no fresh metrics: holding the current count", inputs)
    inputs.update(stable=round(stable_raw, 4), panic=round(panic_raw, 4))

    # 3. tolerance relative to the current count
    tol = config.tolerance_percent / 100
    if current > 0 and abs(stable_raw - current) <= tol * current:
        stable_desired = current
        notes.append(f"stable {stable_raw:.2f} within {config.tolerance_percent:g}% of {current}")
    else:
        stable_desired = ceil_units(stable_raw)
    panic_desired = ceil_units(panic_raw)

    # 4. Knative rate limits relative to ready pods
    max_up = math.ceil(config.max_scale_up_rate * ready)
    max_down = math.floor(ready / config.max_scale_down_rate)
    stable_desired = min(max(stable_desired, max_down), max_up)
    panic_desired = min(max(panic_desired, max_down), max_up)

    # 5. panic mode
    panic_since, last_over = state.panic_since, state.last_over_threshold
    if not state.started and current > 1:
        # Knative: a fresh autoscaler has no history, so it must not scale down at once.
        panic_since, last_over = now, now
        notes.append("started in panic mode so that lost history cannot scale down")
    over = panic_desired / ready >= config.panic.threshold_percent / 100
    if over:
        last_over = now
        if panic_since is None:
            panic_since = now
            notes.append(f"panic: {panic_desired} needed for {ready} ready "
                         f">= {config.panic.threshold_percent:g}%")
    elif panic_since is not None and last_over is not None and now - last_over >= config.panic_hold_s:
        panic_since, last_over = None, None
        notes.append("panic over: a full hold without over-threshold load")
    mode: Mode = "Panic" if panic_since is not None else "Stable"

    recs = (*tuple(r for r in state.recommendations if now - r[0] < max(
        config.scale_up.stabilization_window_s, config.scale_down.stabilization_window_s)),
        (now, stable_desired))

    if mode == "Panic":
        desired = max(stable_desired, panic_desired, current)
        if config.panic.percent > 0:
            start = max(1, current - _changed_within(state.scale_events, now, config.panic.period_s, +1))
            cap = ceil_units(start * (1 + config.panic.percent / 100))
            if desired > cap:
                notes.append(f"panic growth capped at {cap}")
                desired = max(cap, current)
    else:
        # 6. HPA stabilization, then per-period limits
        up_rec = min(n for t, n in recs if now - t < config.scale_up.stabilization_window_s or t == now)
        down_rec = max(n for t, n in recs if now - t < config.scale_down.stabilization_window_s or t == now)
        desired = current
        if desired < up_rec:
            desired = up_rec
        if desired > down_rec:
            desired = down_rec
        if desired != stable_desired:
            notes.append(f"stabilized {stable_desired} -> {desired}")
        if desired > current:
            limit = scale_up_limit(config.scale_up, current, state.scale_events, now)
            if desired > limit:
                notes.append(f"scale-up limited to {limit} this period")
                desired = limit
        elif desired < current:
            limit = scale_down_limit(config.scale_down, current, state.scale_events, now)
            if desired < limit:
                notes.append(f"scale-down limited to {limit} this period")
                desired = limit

    # 7. missing data, scale to zero, bounds
    if not complete and desired < current:
        notes.append(f"metrics missing or stale ({', '.join(stale) or 'none configured'}): "
                     "scale-down suppressed")
        desired = current
    zero_since = (now if state.zero_since is None else state.zero_since) if stable_raw <= _EPS else None
    if desired == 0 and (zero_since is None or now - zero_since < config.scale_to_zero_grace_s):
        desired = min(current, 1) if current > 0 else 0
        if current > 0:
            notes.append("waiting for the scale-to-zero grace period")
    if desired < lo or desired > hi:
        notes.append(f"clamped to bounds [{lo}, {hi}]")
    desired = min(max(desired, lo), hi)

    next_state = replace(state, samples=keep, recommendations=recs, panic_since=panic_since,
                         last_over_threshold=last_over, zero_since=zero_since, started=True)
    reason = "; ".join(notes) if notes else (
        f"{mode.lower()}: demand {stable_raw:.2f} replicas" if desired == current
        else f"{mode.lower()}: demand {max(stable_raw, panic_raw if mode == 'Panic' else 0):.2f} replicas")
    return _finish(config, state, next_state, now, current, desired, mode, reason, inputs)


def _finish(config: KpaConfig, state: KpaState, next_state: KpaState, now: float, current: int,
            desired: int, mode: Mode, reason: str, inputs: dict[str, Any]) -> tuple[Decision, KpaState]:
    horizon = max(config.scale_up.period_s, config.scale_down.period_s, config.panic.period_s)
    events = tuple(e for e in next_state.scale_events if now - e[0] < horizon)
    last = next_state.last_scale_time
    if desired != current:
        events = (*events, (now, desired - current))
        last = now
    next_state = replace(next_state, scale_events=events, last_scale_time=last)
    return Decision(desired=desired, current=current, mode=mode, reason=reason, inputs=inputs), next_state
