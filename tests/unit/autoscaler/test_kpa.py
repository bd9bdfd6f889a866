"""KPA stable/panic scaling: Knative's rules, HPA behaviour, and Kthena's bugs fixed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.kpa import (
    Decision,
    KpaConfig,
    KpaState,
    MetricSample,
    PanicRule,
    RateRule,
    Tick,
    recommend,
    scale_down_limit,
    scale_up_limit,
)

FREE = RateRule(instances=1000, percent=1000, period_s=15, stabilization_window_s=0)


def cfg(**kw: object) -> KpaConfig:
    base: dict[str, object] = dict(min_replicas=1, max_replicas=100, stable_window_s=60, panic_window_s=6,
                                   scale_up=FREE, scale_down=FREE, max_scale_down_rate=1000)
    base.update(kw)
    return KpaConfig(**base)  # type: ignore[arg-type]


def tick(now: float, current: int, value: float | None, *, target: float = 10, ready: int | None = None,
         missing_pods: int = 0) -> Tick:
    sample = MetricSample("waiting", target, value, None if value is None else now, missing_pods)
    return Tick(now=now, current_replicas=current, ready_replicas=current if ready is None else ready,
                metrics=(sample,))


def warm(config: KpaConfig, current: int, value: float) -> tuple[KpaState, float]:
    """A state that has watched `value` for a full stable window at `current` replicas."""
    state = KpaState(started=True)
    now = 0.0
    while now <= config.stable_window_s:
        _, state = recommend(config, state, tick(now, current, value))
        now += 15
    return state, now


def run(config: KpaConfig, state: KpaState, t: Tick) -> Decision:
    return recommend(config, state, t)[0]


def test_tolerance_is_relative_to_the_current_count() -> None:
    config = cfg()
    state, now = warm(config, 10, 100)
    # 10.8 replicas of demand is within 10% of 10: keep 10 (Kthena compares with 1 and would move).
    assert run(config, state, tick(now, 10, 108)).desired == 10


def test_demand_outside_tolerance_rounds_up() -> None:
    config = cfg(panic=PanicRule(threshold_percent=1000))
    state, now = warm(config, 10, 115)
    assert run(config, state, tick(now, 10, 115)).desired == 12


def test_ten_replicas_scale_down_when_total_equals_one_target() -> None:
    # Kthena's bug: sum 10 with target 10 is "within tolerance of 1" and keeps 10 replicas.
    config = cfg(scale_to_zero=False)
    state, now = warm(config, 10, 10)
    assert run(config, state, tick(now, 10, 10)).desired == 1


def test_max_scale_down_rate_halves_at_most() -> None:
    config = cfg(max_scale_down_rate=2)
    state, now = warm(config, 10, 10)
    assert run(config, state, tick(now, 10, 10)).desired == 5


def test_max_scale_up_rate_bounds_growth_by_ready_pods() -> None:
    config = cfg(max_scale_up_rate=2, panic=PanicRule(threshold_percent=1000))
    state, now = warm(config, 4, 400)
    assert run(config, state, tick(now, 4, 400)).desired == 8


def test_panic_starts_when_panic_window_demand_doubles_ready_pods() -> None:
    config = cfg()
    state, now = warm(config, 2, 20)
    decision = run(config, state, tick(now, 2, 100))
    assert decision.mode == "Panic"
    assert decision.desired == 10


def test_below_panic_threshold_stays_stable_with_averaged_demand() -> None:
    config = cfg()
    state, now = warm(config, 4, 40)
    decision = run(config, state, tick(now, 4, 60))  # panic 6 / ready 4 = 150% < 200%
    assert decision.mode == "Stable"
    assert decision.desired == 5  # stable average (4*40+60)/5/10 = 4.4 -> outside 10% -> 5


def test_panic_never_scales_down_before_the_hold_ends() -> None:
    config = cfg(panic=PanicRule(hold_s=60))
    state, now = warm(config, 2, 20)
    _, state = recommend(config, state, tick(now, 2, 100))
    decision = run(config, state, tick(now + 15, 10, 10))
    assert decision.mode == "Panic"
    assert decision.desired == 10


def test_panic_ends_after_a_hold_without_over_threshold_load() -> None:
    config = cfg(panic=PanicRule(hold_s=30))
    state, now = warm(config, 2, 20)
    _, state = recommend(config, state, tick(now, 2, 100))
    for k in range(1, 3):
        _, state = recommend(config, state, tick(now + 15 * k, 10, 100))
    decision = run(config, state, tick(now + 15 * 3 + 30, 10, 100))
    assert decision.mode == "Stable"


def test_panic_growth_is_capped_per_period() -> None:
    config = cfg(panic=PanicRule(percent=100, period_s=15))
    state, now = warm(config, 2, 20)
    assert run(config, state, tick(now, 2, 200)).desired == 4


def test_fresh_autoscaler_with_replicas_starts_in_panic_and_keeps_them() -> None:
    config = cfg()
    decision = run(config, KpaState(), tick(0, 6, 10))
    assert decision.mode == "Panic"
    assert decision.desired == 6


def test_scale_down_waits_for_the_stabilization_window() -> None:
    config = cfg(scale_down=RateRule(instances=100, percent=100, period_s=15, stabilization_window_s=120))
    state, now = warm(config, 8, 80)
    desired = []
    current = 8
    for k in range(12):
        d, state = recommend(config, state, tick(now + 15 * k, current, 10))
        desired.append(d.desired)
        current = d.desired
    # The last recommendation of 8 was at t=60; the window forgets it at t=180 (k=7).
    assert desired[:7] == [8] * 7
    assert desired[7] < 8


def test_stable_scale_down_keeps_the_window_maximum() -> None:
    config = cfg(scale_down=RateRule(instances=100, percent=100, period_s=15, stabilization_window_s=300))
    state, now = warm(config, 8, 80)
    assert run(config, state, tick(now, 8, 10)).desired == 8


def test_scale_up_limit_or_takes_the_larger_change() -> None:
    rule = RateRule(instances=2, percent=100, period_s=60, select_policy="Or")
    assert scale_up_limit(rule, 4, (), 0) == 8


def test_scale_up_limit_and_takes_the_smaller_change() -> None:
    rule = RateRule(instances=2, percent=100, period_s=60, select_policy="And")
    assert scale_up_limit(rule, 4, (), 0) == 6


def test_scale_up_limit_counts_from_the_period_start() -> None:
    rule = RateRule(instances=2, percent=0, period_s=60, select_policy="Or")
    # 4 -> 6 ten seconds ago: the period started at 4, so 6 is already the limit.
    assert scale_up_limit(rule, 6, ((-10.0, 2),), 0) == 6


def test_scale_up_from_zero_allows_one_replica() -> None:
    rule = RateRule(instances=0, percent=100, period_s=60)
    assert scale_up_limit(rule, 0, (), 0) == 1


def test_scale_down_limit_or_takes_the_larger_change() -> None:
    rule = RateRule(instances=1, percent=50, period_s=60, select_policy="Or")
    assert scale_down_limit(rule, 10, (), 0) == 5


def test_scale_down_limit_and_takes_the_smaller_change() -> None:
    rule = RateRule(instances=1, percent=50, period_s=60, select_policy="And")
    assert scale_down_limit(rule, 10, (), 0) == 9


def test_missing_metric_never_scales_down() -> None:
    config = cfg()
    state, now = warm(config, 8, 10)
    decision = run(config, state, tick(now, 8, None))
    assert decision.desired == 8


def test_stale_metric_never_scales_down() -> None:
    config = cfg(stale_after_s=30)
    state, now = warm(config, 8, 80)
    stale = Tick(now=now, current_replicas=8, ready_replicas=8,
                 metrics=(MetricSample("waiting", 10, 1, now - 120),))
    assert run(config, state, stale).desired == 8


def test_ready_pods_without_metrics_count_at_target_on_the_way_down() -> None:
    config = cfg()
    # 2 of 4 pods report 20 in total; the other two are assumed at target: 2 + 2 = 4 replicas.
    assert run(config, KpaState(started=True), tick(0, 4, 20, missing_pods=2)).desired == 4


def test_scale_to_zero_only_after_the_grace_period() -> None:
    config = cfg(min_replicas=0, scale_to_zero=True, scale_to_zero_grace_s=30)
    state, now = warm(config, 1, 0)
    assert run(config, state, tick(now, 1, 0)).desired == 0
    assert run(config, KpaState(started=True), tick(0, 1, 0)).desired == 1


def test_without_scale_to_zero_the_floor_is_one() -> None:
    config = cfg(min_replicas=0, scale_to_zero=False)
    state, now = warm(config, 1, 0)
    assert run(config, state, tick(now, 1, 0)).desired == 1


def test_bounds_clamp_the_recommendation() -> None:
    config = cfg(max_replicas=6, panic=PanicRule(threshold_percent=1000))
    state, now = warm(config, 4, 200)
    decision = run(config, state, tick(now, 4, 200))
    assert decision.desired == 6
    assert "bounds" in decision.reason


def test_config_rejects_bad_bounds_naming_the_field() -> None:
    with pytest.raises(ValueError, match="maxReplicas"):
        KpaConfig(min_replicas=5, max_replicas=3)


def test_panic_threshold_range_is_enforced() -> None:
    with pytest.raises(ValueError, match="panicThresholdPercent"):
        PanicRule(threshold_percent=100)


values = st.one_of(st.none(), st.floats(min_value=0, max_value=5000, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(
    min_r=st.integers(0, 5), span=st.integers(0, 20), zero=st.booleans(),
    start=st.integers(0, 40), series=st.lists(values, min_size=1, max_size=30),
)
def test_bounds_are_never_broken(min_r: int, span: int, zero: bool, start: int,
                                 series: list[float | None]) -> None:
    config = KpaConfig(min_replicas=min_r, max_replicas=max(min_r, 1) + span, scale_to_zero=zero)
    state, current = KpaState(), start
    for k, v in enumerate(series):
        d, state = recommend(config, state, tick(k * 15.0, current, v))
        assert config.floor <= d.desired <= config.max_replicas
        current = d.desired


@settings(max_examples=150, deadline=None)
@given(start=st.integers(1, 30), series=st.lists(values, min_size=1, max_size=30))
def test_no_scale_down_on_a_tick_with_missing_data(start: int, series: list[float | None]) -> None:
    config = KpaConfig(min_replicas=1, max_replicas=50, scale_down=RateRule(
        instances=100, percent=100, period_s=15, stabilization_window_s=0))
    state, current = KpaState(), start
    for k, v in enumerate(series):
        d, state = recommend(config, state, tick(k * 15.0, current, v))
        if v is None:
            assert d.desired >= current
        current = d.desired
