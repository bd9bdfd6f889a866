"""Demand to provision for: forecast over the start-up delay, error margin, hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.demand import DemandEstimator


def test_a_rising_load_is_provisioned_ahead_by_the_lead() -> None:
    est = DemandEstimator(lead=3, z=0, hold=1)
    need = 0.0
    for v in range(10, 110, 10):
        need = est.observe(v)
    assert need > 100 * 1.15


def test_noisier_demand_gets_a_wider_margin() -> None:
    calm, noisy = DemandEstimator(z=2, hold=1), DemandEstimator(z=2, hold=1)
    for k in range(40):
        calm.observe(50)
        noisy.observe(50 + (8 if k % 2 else -8))
    assert noisy.sigma > calm.sigma


def test_a_dip_is_held_for_the_hold_window() -> None:
    est = DemandEstimator(lead=0, z=0, hold=3)
    for _ in range(5):
        est.observe(80)
    assert est.observe(10) == 80
    assert est.observe(10) == 80
    assert est.observe(10) < 80


def test_negative_demand_is_rejected() -> None:
    with pytest.raises(ValueError, match="demand"):
        DemandEstimator().observe(-1)


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=50))
def test_need_never_falls_below_the_last_observation(values: list[float]) -> None:
    est = DemandEstimator()
    for v in values:
        assert est.observe(v) >= v - 1e-9
