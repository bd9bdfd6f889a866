"""Heterogeneous optimiser: cheapest capacity, placement-aware, with churn and explanations."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.capacity import CapacityEstimate, update_capacity
from autoscaler.optimizer import (
    OptimizerConfig,
    Placeable,
    Variant,
    fits,
    greedy_plan,
    max_additional_replicas,
    optimize,
)

A100 = Variant("a100", cost=60, capacity=1, min_replicas=0, max_replicas=8, gpus_per_replica=1, pool="a100")
H100 = Variant("h100", cost=100, capacity=2, min_replicas=0, max_replicas=4, gpus_per_replica=1, pool="h100")
NO_CHURN = OptimizerConfig(churn=0)


def test_chooses_the_lowest_cost_per_unit_of_capacity() -> None:
    plan = optimize([A100, H100], demand=4, config=NO_CHURN)
    assert plan.replicas == {"a100": 0, "h100": 2}


def test_fills_an_odd_remainder_with_the_cheaper_small_replica() -> None:
    plan = optimize([A100, H100], demand=5, config=NO_CHURN)
    assert plan.replicas == {"a100": 1, "h100": 2}


def test_stops_asking_for_a_variant_whose_gpus_are_taken() -> None:
    taken = Placeable(free_gpus={"h100": [0, 0], "a100": [8]})
    plan = optimize([A100, H100], demand=4, placeable=taken, config=NO_CHURN)
    assert plan.replicas == {"a100": 4, "h100": 0}
    assert "placement allows only 0 more" in plan.reasons["h100"]


def test_existing_replicas_keep_running_when_their_pool_is_full() -> None:
    full = Placeable(free_gpus={"h100": [0]})
    plan = optimize([A100, replace_current(H100, 2)], demand=4, placeable=full, config=NO_CHURN)
    assert plan.replicas["h100"] == 2


def test_churn_penalty_keeps_a_fleet_that_already_meets_demand() -> None:
    current = [replace_current(A100, 4), H100]
    plan = optimize(current, demand=4, config=OptimizerConfig(churn=0.5))
    assert plan.replicas == {"a100": 4, "h100": 0}
    assert "kept" in plan.reasons["a100"]


def test_without_churn_starting_replicas_move_to_the_cheaper_variant() -> None:
    current = [replace_current(A100, 4, ready=0), H100]
    plan = optimize(current, demand=4, config=NO_CHURN)
    assert plan.replicas == {"a100": 0, "h100": 2}


def test_ready_replicas_are_kept_until_their_replacements_serve() -> None:
    current = [replace_current(A100, 4, ready=4), H100]
    plan = optimize(current, demand=4, config=NO_CHURN)
    assert plan.replicas == {"a100": 4, "h100": 2}
    assert plan.target == {"a100": 0, "h100": 2}
    assert "4 ready replicas kept until the new ones serve" in plan.reasons["a100"]


def test_once_replacements_serve_the_old_replicas_are_released() -> None:
    current = [replace_current(A100, 4, ready=4), replace_current(H100, 2, ready=2)]
    plan = optimize(current, demand=4, config=NO_CHURN)
    assert plan.replicas == {"a100": 0, "h100": 2}


def test_cluster_full_reports_the_shortfall_and_uses_all_it_can_place() -> None:
    plan = optimize([A100, H100], demand=100, config=NO_CHURN)
    assert plan.replicas == {"a100": 8, "h100": 4}
    assert plan.shortfall == pytest.approx(84)
    assert not plan.meets_demand


def test_shared_pool_packs_new_replicas_onto_nodes() -> None:
    # Two variants on one GPU type: 4-GPU replicas and 8-GPU replicas, nodes with 6 and 8 free.
    small = Variant("tp4", cost=45, capacity=1, min_replicas=0, max_replicas=10, gpus_per_replica=4, pool="h100")
    big = Variant("tp8", cost=80, capacity=2, min_replicas=0, max_replicas=10, gpus_per_replica=8, pool="h100")
    plan = optimize([small, big], demand=3, placeable=Placeable(free_gpus={"h100": [6, 8]}), config=NO_CHURN)
    # tp8 is cheaper per unit but only one fits (the 8-GPU node); the 6-GPU node takes one tp4.
    assert plan.replicas == {"tp4": 1, "tp8": 1}


def test_sizes_that_do_not_divide_are_packed_node_by_node() -> None:
    tp3 = Variant("tp3", cost=30, capacity=1, min_replicas=0, max_replicas=10, gpus_per_replica=3, pool="g")
    tp2 = Variant("tp2", cost=25, capacity=1, min_replicas=0, max_replicas=10, gpus_per_replica=2, pool="g")
    plan = optimize([tp3, tp2], demand=3, placeable=Placeable(free_gpus={"g": [5, 3]}), config=NO_CHURN)
    # Node 5 holds 2+3 or 2+2, node 3 holds one tp3 or one tp2: three replicas at least cost.
    assert plan.replicas == {"tp3": 0, "tp2": 3} or plan.replicas == {"tp3": 1, "tp2": 2}
    assert plan.cost == 75


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=1, max_size=3), st.lists(st.sampled_from([1, 2, 4, 8]), max_size=5))
def test_divisible_fit_matches_exhaustive_packing(free: list[int], sizes: list[int]) -> None:
    def exhaustive(bins: list[int], items: list[int]) -> bool:
        if not items:
            return True
        head, rest = items[0], items[1:]
        for i, f in enumerate(bins):
            if f >= head and exhaustive([*bins[:i], f - head, *bins[i + 1:]], rest):
                return True
        return False

    assert fits(free, sizes) == exhaustive(free, sorted(sizes, reverse=True))


def test_headroom_asks_for_extra_capacity() -> None:
    plan = optimize([A100], demand=4, config=OptimizerConfig(churn=0, headroom=0.25))
    assert plan.replicas == {"a100": 5}


def test_max_additional_counts_whole_replicas_per_node() -> None:
    assert max_additional_replicas([8, 7, 3, 0], 4) == 3


def test_bad_demand_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="demand"):
        optimize([A100], demand=float("nan"))


def test_capacity_follows_saturated_throughput() -> None:
    est = update_capacity(CapacityEstimate(10), throughput=40, ready=2, saturated=True, alpha=0.5)
    assert est.value == pytest.approx(15)


def test_unsaturated_throughput_only_raises_the_capacity() -> None:
    est = CapacityEstimate(10)
    assert update_capacity(est, throughput=8, ready=2, saturated=False).value == 10
    assert update_capacity(est, throughput=30, ready=2, saturated=False).value == 15


def replace_current(v: Variant, current: int, ready: int | None = None) -> Variant:
    return dataclasses.replace(v, current=current, ready=ready)


variant_st = st.tuples(st.integers(1, 50), st.integers(1, 4), st.integers(0, 2), st.integers(0, 3),
                       st.integers(0, 4))


@settings(max_examples=60, deadline=None)
@given(st.lists(variant_st, min_size=1, max_size=3), st.integers(0, 3000).map(lambda k: k / 100))
def test_plan_is_as_cheap_as_brute_force_and_within_bounds(spec: list[tuple[int, int, int, int, int]],
                                                           demand: float) -> None:
    variants = [Variant(f"v{i}", c, cap, lo, lo + extra, current=cur, ready=0)
                for i, (c, cap, lo, extra, cur) in enumerate(spec)]
    plan = optimize(variants, demand, config=NO_CHURN)
    for v in variants:
        assert v.min_replicas <= plan.replicas[v.name] <= v.max_replicas
    ranges = [range(v.min_replicas, v.max_replicas + 1) for v in variants]
    best_short, best_cost = min(
        (max(0.0, demand - sum(v.capacity * n for v, n in zip(variants, combo, strict=True))),
         sum(v.cost * n for v, n in zip(variants, combo, strict=True)))
        for combo in itertools.product(*ranges))
    assert plan.shortfall == pytest.approx(best_short, abs=1e-3)
    assert plan.cost == pytest.approx(best_cost)


def test_fallback_keeps_the_fleet_and_adds_cheapest_capacity_first() -> None:
    current = [replace_current(A100, 2), H100]
    plan = greedy_plan(current, demand=6, need=6, caps=[None, None], started=0.0, status="UNKNOWN")
    assert plan.replicas == {"a100": 2, "h100": 2}
    assert plan.status == "FALLBACK_UNKNOWN"
