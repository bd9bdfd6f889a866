"""SLA mode: Dynamo-planner replica formulas, correction factors and load predictors."""

from __future__ import annotations

import math

import pytest

from autoscaler.sla import (
    ConstantPredictor,
    DecodeProfile,
    KalmanPredictor,
    MovingAveragePredictor,
    Observation,
    PrefillProfile,
    SlaPlanner,
    SlaTargets,
    make_predictor,
    observation_from_rates,
    sla_mode_from_json,
)

PREFILL = PrefillProfile(isl=[128, 1024, 4096], ttft_ms=[20, 100, 400], thpt_per_gpu=[8000, 10000, 10000])
DECODE = DecodeProfile(
    kv_usage=[0.1, 0.5, 1.0], context=[512, 4096],
    itl_ms=[[10, 30, 60], [15, 40, 80]],
    thpt_per_gpu=[[500, 2000, 3000], [300, 1200, 1800]],
    max_kv_tokens=100_000,
)


def planner(**kw: object) -> SlaPlanner:
    return SlaPlanner(PREFILL, DECODE, SlaTargets(interval_s=60, itl_ms=30), predictor="constant", **kw)  # type: ignore[arg-type]


def test_constant_predictor_returns_the_last_value_and_skips_leading_zeros() -> None:
    p = ConstantPredictor()
    for v in (0, 0, 5, 7):
        p.observe(v)
    assert p.predict() == 7


def test_moving_average_over_its_window() -> None:
    p = MovingAveragePredictor(window=3)
    for v in (1, 2, 3, 4):
        p.observe(v)
    assert p.predict() == 3


def test_kalman_follows_a_linear_trend() -> None:
    p = KalmanPredictor()
    for v in range(10, 210, 10):
        p.observe(v)
    assert p.predict() == pytest.approx(210, rel=0.05)


def test_kalman_answers_the_last_value_before_min_points() -> None:
    p = KalmanPredictor(min_points=5)
    for v in (3, 9):
        p.observe(v)
    assert p.predict() == 9


def test_predictor_treats_nan_as_zero() -> None:
    p = ConstantPredictor()
    p.observe(4)
    p.observe(math.nan)
    assert p.predict() == 0


def test_unknown_predictor_is_rejected_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="constant, moving_average, kalman"):
        make_predictor("arima")  # type: ignore[arg-type]


def test_prefill_replicas_from_tokens_per_second_over_profiled_throughput() -> None:
    sla = planner()
    sla.observe(Observation(num_requests=600, isl=1024, osl=128), current_decode=1)
    plan = sla.plan()
    assert plan is not None
    # 600 req x 1024 tokens / 60 s = 10240 tok/s over 10000 tok/s per GPU -> 2 prefill
    assert plan.prefill == 2


def test_decode_replicas_use_the_best_throughput_meeting_itl() -> None:
    sla = planner()
    sla.observe(Observation(num_requests=600, isl=512, osl=512), current_decode=1)
    plan = sla.plan()
    assert plan is not None
    # context 768: ITL 30 ms reached near kv 0.5 with ~1886 tok/s/GPU; 5120 tok/s -> 3 decode
    assert plan.decode == 3


def test_observed_ttft_below_expected_lowers_the_prefill_load() -> None:
    sla = planner()
    sla.observe(Observation(num_requests=600, isl=1024, osl=128, ttft_ms=50), current_decode=1)
    plan = sla.plan()
    assert plan is not None
    assert plan.p_correction == pytest.approx(0.5)
    assert plan.prefill == 1


def test_observed_itl_above_expected_tightens_the_decode_target() -> None:
    loose, tight = planner(), planner()
    obs = Observation(num_requests=600, isl=512, osl=512)
    loose.observe(obs, current_decode=3)
    tight.observe(Observation(600, 512, 512, itl_ms=60, request_duration_s=10), current_decode=3)
    a, b = loose.plan(), tight.plan()
    assert a is not None and b is not None
    assert b.d_correction > 1
    assert b.decode > a.decode


def test_no_prediction_without_observations() -> None:
    assert planner().plan() is None


def test_gpu_budget_shrinks_both_roles() -> None:
    sla = SlaPlanner(PREFILL, DECODE, SlaTargets(interval_s=60, itl_ms=30, max_gpu_budget=4), predictor="constant")
    sla.observe(Observation(num_requests=6000, isl=1024, osl=512), current_decode=1)
    plan = sla.plan()
    assert plan is not None
    assert plan.prefill + plan.decode == 4


SLA_JSON = {
    "ttftMs": 300, "itlMs": 30, "predictor": "constant",
    "profile": {"prefill": {"isl": [128, 4096], "ttftMs": [20, 400], "thptPerGpu": [8000, 10000]},
                "decode": {"kvUsage": [0.1, 1.0], "context": [512, 4096], "itlMs": [[10, 60], [15, 80]],
                           "thptPerGpu": [[500, 3000], [300, 1800]], "maxKvTokens": 100000}},
}


def test_sla_mode_parses_targets_roles_and_profiles() -> None:
    mode = sla_mode_from_json(SLA_JSON)
    assert (mode.targets.ttft_ms, mode.targets.itl_ms, mode.predictor) == (300, 30, "constant")
    assert (mode.prefill_role, mode.decode_role) == ("prefill", "decode")


def test_sla_mode_without_a_profile_names_the_missing_field() -> None:
    with pytest.raises(ValueError, match="missing field 'profile'"):
        sla_mode_from_json({"ttftMs": 300})


def test_observation_from_engine_rates() -> None:
    obs = observation_from_rates(60, requests_per_s=10, prompt_tokens_per_s=10240, generation_tokens_per_s=1280,
                                 ttft_s=0.1, itl_s=0.02)
    assert obs is not None
    assert (obs.num_requests, obs.isl, obs.osl, obs.ttft_ms, obs.itl_ms) == (600, 1024, 128, 100, 20)


def test_no_traffic_gives_no_observation() -> None:
    assert observation_from_rates(60, 0, 0, 0, None, None) is None
