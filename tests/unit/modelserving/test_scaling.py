from __future__ import annotations

from modelserving.scaling import Candidate, missing_ordinals, scale_down


def test_scale_down_takes_highest_ordinals_when_all_equal() -> None:
    cands = [Candidate(i, running=True) for i in range(4)]
    assert scale_down(cands, 2) == [3, 2]


def test_scale_down_takes_not_running_before_running() -> None:
    cands = [Candidate(0, True), Candidate(1, False), Candidate(2, True)]
    assert scale_down(cands, 2) == [1]


def test_scale_down_prefers_lower_deletion_cost() -> None:
    cands = [Candidate(0, True, 5), Candidate(1, True, -3), Candidate(2, True, 10)]
    assert scale_down(cands, 1) == [1, 0]


def test_status_outranks_deletion_cost() -> None:
    cands = [Candidate(0, True, -100), Candidate(1, False, 100)]
    assert scale_down(cands, 1) == [1]


def test_partition_protected_go_last() -> None:
    cands = [Candidate(0, False), Candidate(1, True), Candidate(2, True)]
    assert scale_down(cands, 1, partition=1) == [2, 1]
    assert scale_down(cands, 0, partition=1) == [2, 1, 0]


def test_no_scale_down_when_at_or_below_desired() -> None:
    assert scale_down([Candidate(0, True)], 1) == []


def test_missing_ordinals_fill_lowest_gaps_up_to_the_count() -> None:
    assert missing_ordinals(3, [0, 2]) == [1]
    assert missing_ordinals(3, [0, 5]) == [1]
    assert missing_ordinals(2, [0, 5]) == []
    assert missing_ordinals(3, []) == [0, 1, 2]
