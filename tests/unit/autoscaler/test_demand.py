"""Demand to provision for: forecast over the start-up delay, noise margin, level shifts, hold."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.demand import DemandEstimator
from autoscaler.sla import KalmanPredictor


def noisy(level: float, n: int, sd: float = 3.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [max(0.0, level + rng.gauss(0, sd)) for _ in range(n)]


def test_a_rising_load_is_provisioned_ahead_by_the_lead() -> None:
    est = DemandEstimator(lead=3, z=0, hold=1)
    need = 0.0
    for v in range(10, 110, 10):
        need = est.observe(v)
    assert need > 100 * 1.15


def test_noisier_demand_gets_a_wider_margin() -> None:
    calm, noisy_est = DemandEstimator(z=2, hold=1), DemandEstimator(z=2, hold=1)
    for k in range(120):
        calm.observe(50)
        noisy_est.observe(50 + (4 if k % 2 else -4))
    assert noisy_est.sigma > calm.sigma


def test_steady_noise_is_covered_by_the_margin_without_chasing_each_observation() -> None:
    est = DemandEstimator(lead=3, z=2, hold=1)
    values = noisy(40, 300)
    needs = [est.observe(v) for v in values]
    tail_values, tail_needs = values[150:], needs[150:]
    # The need moves much less than the observations do ...
    assert max(tail_needs) - min(tail_needs) < (max(tail_values) - min(tail_values)) / 2
    # ... and sits about two standard deviations (3) above the level (40).
    assert 44 < sum(tail_needs) / len(tail_needs) < 49


def test_a_burst_is_followed_in_one_step() -> None:
    est = DemandEstimator(lead=3, z=2, hold=1)
    for v in noisy(40, 150):
        est.observe(v)
    shifts = est.shifts
    need = est.observe(90)
    assert est.shifts == shifts + 1
    assert need >= 90


def test_the_capacity_of_a_burst_is_released_once_the_hold_has_passed() -> None:
    est = DemandEstimator(lead=3, z=2, hold=2)
    for v in noisy(40, 150):
        est.observe(v)
    for v in noisy(90, 10, seed=2):
        est.observe(v)
    after = [est.observe(v) for v in noisy(40, 3, seed=3)]
    assert after[0] > 80  # held for one more step
    assert after[2] < 52  # then back to the base level plus its margin


def test_a_dip_is_held_for_the_hold_window() -> None:
    est = DemandEstimator(lead=0, z=0, hold=3)
    for _ in range(5):
        est.observe(80)
    assert est.observe(10) == 80
    assert est.observe(10) == 80
    assert est.observe(10) < 80


def test_a_falling_trend_does_not_release_capacity_before_the_demand_falls() -> None:
    est = DemandEstimator(lead=5, z=0, hold=1, jump=100)
    need = 0.0
    for v in range(200, 100, -2):
        need = est.observe(v)
    assert need >= est.kalman.forecast(0)  # type: ignore[operator]
    assert need > 100 - 5 * 2


def test_a_constant_history_still_gets_the_prior_margin() -> None:
    est = DemandEstimator(z=2, hold=1, prior_noise=0.1, prior_samples=90)
    need = 0.0
    for _ in range(10):
        need = est.observe(40)
    assert need > 40 + 2 * 0.1 * 40 * 0.8


def test_the_prior_fades_once_enough_errors_are_known() -> None:
    est = DemandEstimator(z=2, hold=1, prior_noise=0.1, prior_samples=20)
    for _ in range(40):
        est.observe(40)
    assert est.sigma == 0
    assert est.observe(40) == pytest.approx(40)


def test_kalman_restart_sets_the_level_and_forgets_the_trend() -> None:
    k = KalmanPredictor(min_points=3)
    for v in (10, 20, 30, 40, 50):
        k.observe(v)
    k.restart(5)
    assert k.forecast(0) == 5
    assert k.forecast(3) == 5


def test_negative_demand_is_rejected() -> None:
    with pytest.raises(ValueError, match="demand"):
        DemandEstimator().observe(-1)


def test_a_non_positive_jump_threshold_is_rejected() -> None:
    with pytest.raises(ValueError, match="jump"):
        DemandEstimator(jump=0)


@given(st.floats(0.1, 1000, allow_nan=False), st.integers(1, 60))
def test_a_constant_load_is_never_under_provisioned(value: float, steps: int) -> None:
    est = DemandEstimator()
    for _ in range(steps):
        assert est.observe(value) >= value - 1e-9


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=80))
def test_a_level_shift_is_always_covered_at_once(values: list[float]) -> None:
    est = DemandEstimator(hold=1)
    for v in values:
        shifts = est.shifts
        need = est.observe(v)
        assert need >= 0
        if est.shifts > shifts:
            assert need >= v - 1e-9
