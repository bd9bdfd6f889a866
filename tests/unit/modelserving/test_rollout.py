from __future__ import annotations

from modelserving.rollout import Unit, next_current_revision, plan_step


def _units(n: int, updated: set[int] = frozenset(), unavailable: set[int] = frozenset()) -> list[Unit]:  # type: ignore[assignment]
    return [Unit(i, i in updated, i not in unavailable) for i in range(n)]


def test_replaces_one_available_group_at_a_time_highest_ordinal_first() -> None:
    assert plan_step(_units(3), replicas=3, max_unavailable=1).replace == [2]


def test_waits_while_a_replaced_group_is_not_yet_available() -> None:
    assert plan_step(_units(3, updated={2}, unavailable={2}), replicas=3, max_unavailable=1).replace == []


def test_missing_groups_use_up_the_budget() -> None:
    units = [Unit(0, False, True), Unit(1, False, True)]
    assert plan_step(units, replicas=3, max_unavailable=1).replace == []


def test_unavailable_outdated_groups_are_replaced_regardless_of_budget() -> None:
    step = plan_step(_units(3, unavailable={0, 1}), replicas=3, max_unavailable=1)
    assert step.replace == [1, 0]


def test_max_unavailable_two_replaces_two() -> None:
    assert plan_step(_units(4), replicas=4, max_unavailable=2).replace == [3, 2]


def test_partition_protects_the_first_n() -> None:
    assert plan_step(_units(3, updated={2}), replicas=3, max_unavailable=1, partition=2).replace == []
    assert plan_step(_units(3), replicas=3, max_unavailable=1, partition=2).replace == [2]


def test_nothing_to_do_when_all_updated() -> None:
    assert plan_step(_units(2, updated={0, 1}), replicas=2, max_unavailable=1).replace == []


def test_current_revision_moves_when_every_group_is_updated_and_available() -> None:
    assert next_current_revision("old", "new", replicas=3, updated_available=2) == "old"
    assert next_current_revision("old", "new", replicas=3, updated_available=3) == "new"
    assert next_current_revision(None, "new", replicas=3, updated_available=0) == "new"
