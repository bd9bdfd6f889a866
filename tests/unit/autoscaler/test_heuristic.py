"""Kthena's costExpansionRatePercent block order (kthena.md §3.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.heuristic import VariantBounds, blocks, distribute

H100 = VariantBounds("h100", cost=100, min_replicas=0, max_replicas=4)
A100 = VariantBounds("a100", cost=60, min_replicas=1, max_replicas=8)


def test_worked_example_gives_two_a100_and_one_h100_at_three() -> None:
    assert distribute(3, [H100, A100], 200) == [1, 2]


@pytest.mark.parametrize(("total", "a100", "h100"), [
    (1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 2, 2), (5, 3, 2), (6, 4, 2), (7, 4, 3), (8, 4, 4),
    (9, 5, 4), (12, 8, 4),
])
def test_worked_example_table(total: int, a100: int, h100: int) -> None:
    assert distribute(total, [H100, A100], 200) == [h100, a100]


def test_block_order_puts_the_small_remainder_block_early() -> None:
    order = [(b.variant, b.size, b.cost) for b in blocks([H100, A100], 200)]
    assert order == [(1, 1, 60), (0, 1, 100), (0, 1, 100), (1, 2, 120), (0, 2, 200), (1, 4, 240)]


def test_rate_100_is_cheapest_first() -> None:
    assert distribute(6, [H100, A100], 100) == [0, 6]


def test_total_beyond_the_pool_is_clamped_to_the_maxima() -> None:
    assert distribute(50, [H100, A100], 200) == [4, 8]


def test_minimums_are_always_given() -> None:
    assert distribute(0, [H100, A100], 200) == [0, 1]


def test_negative_rate_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="costExpansionRatePercent"):
        blocks([H100], -1)


@given(st.lists(st.tuples(st.integers(1, 100), st.integers(0, 4), st.integers(0, 8)), min_size=1, max_size=5),
       st.integers(0, 60), st.sampled_from([50, 100, 150, 200, 400]))
def test_counts_stay_within_each_variants_bounds(spec: list[tuple[int, int, int]], total: int,
                                                  rate: int) -> None:
    variants = [VariantBounds(f"v{i}", c, lo, lo + extra) for i, (c, lo, extra) in enumerate(spec)]
    counts = distribute(total, variants, rate)
    assert all(v.min_replicas <= n <= v.max_replicas for v, n in zip(variants, counts, strict=True))
    lo, hi = sum(v.min_replicas for v in variants), sum(v.max_replicas for v in variants)
    assert sum(counts) == min(max(total, lo), hi)
