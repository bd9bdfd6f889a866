"""Role-level prefill/decode scaling with a ratio constraint."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.kpa import KpaConfig, KpaState, MetricSample, RateRule, Tick
from autoscaler.roles import RatioConstraint, enforce_ratio, scale_roles

PD = RatioConstraint("prefill", "decode", min_ratio=0.5, max_ratio=2.0)
BOUNDS = {"prefill": (1, 10), "decode": (1, 10)}


def test_a_ratio_within_bounds_is_left_alone() -> None:
    result = enforce_ratio({"prefill": 3, "decode": 2}, BOUNDS, PD)
    assert result.replicas == {"prefill": 3, "decode": 2}
    assert not result.adjusted


def test_too_few_prefill_raises_prefill() -> None:
    result = enforce_ratio({"prefill": 1, "decode": 6}, BOUNDS, PD)
    assert result.replicas == {"prefill": 3, "decode": 6}
    assert result.adjusted


def test_too_many_prefill_raises_decode() -> None:
    result = enforce_ratio({"prefill": 8, "decode": 2}, BOUNDS, PD)
    assert result.replicas == {"prefill": 8, "decode": 4}


def test_a_saturated_role_lowers_the_other_only_as_far_as_needed() -> None:
    result = enforce_ratio({"prefill": 1, "decode": 9}, {"prefill": (1, 3), "decode": (1, 10)}, PD)
    assert result.replicas == {"prefill": 3, "decode": 6}


def test_both_at_zero_scale_to_zero_together() -> None:
    result = enforce_ratio({"prefill": 0, "decode": 0}, {"prefill": (0, 4), "decode": (0, 4)}, PD)
    assert result.replicas == {"prefill": 0, "decode": 0}


def test_one_role_at_zero_seeds_it() -> None:
    result = enforce_ratio({"prefill": 0, "decode": 2}, {"prefill": (0, 4), "decode": (0, 4)}, PD)
    assert result.replicas == {"prefill": 1, "decode": 2}


def test_unmeetable_ratio_is_an_error_naming_the_roles() -> None:
    with pytest.raises(ValueError, match=r"prefill 5\.\.6 and decode 1\.\.1"):
        enforce_ratio({"prefill": 5, "decode": 1}, {"prefill": (5, 6), "decode": (1, 1)}, PD)


@given(st.integers(0, 12), st.integers(0, 12), st.integers(1, 3), st.integers(4, 12), st.integers(1, 3),
       st.integers(4, 12))
def test_repaired_counts_respect_bounds_and_ratio(want_p: int, want_d: int, plo: int, phi: int, dlo: int,
                                                  dhi: int) -> None:
    bounds = {"prefill": (plo, phi), "decode": (dlo, dhi)}
    r = enforce_ratio({"prefill": want_p, "decode": want_d}, bounds, PD)
    p, d = r.replicas["prefill"], r.replicas["decode"]
    assert plo <= p <= phi and dlo <= d <= dhi
    assert PD.min_ratio <= p / d <= PD.max_ratio


def _tick(value: float) -> Tick:
    return Tick(now=0, current_replicas=2, ready_replicas=2,
                metrics=(MetricSample("waiting", 10, value, 0),))


def test_roles_scale_separately_from_their_own_metrics() -> None:
    free = RateRule(instances=100, percent=1000, period_s=15)
    configs = {r: KpaConfig(min_replicas=1, max_replicas=20, scale_up=free) for r in ("prefill", "decode")}
    states = {r: KpaState(started=True) for r in configs}
    outcome, _ = scale_roles(configs, states, {"prefill": _tick(60), "decode": _tick(20)})
    assert outcome.replicas == {"prefill": 6, "decode": 2}


def test_fixed_role_keeps_its_size() -> None:
    configs = {"prefill": KpaConfig(min_replicas=2, max_replicas=2), "decode": KpaConfig(max_replicas=20)}
    outcome, _ = scale_roles(configs, {}, {"prefill": _tick(500), "decode": _tick(20)})
    assert outcome.replicas["prefill"] == 2
