"""The placement controller's planning loop re-plans after a change that arrives during a round."""

from __future__ import annotations

import asyncio

import pytest

from placement import controller
from topology.graph import NodeInfo


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> controller.State:
    state = controller.State(settings=controller.Settings(window_seconds=0.01, deadline_seconds=120,
                                                          time_limit_seconds=1, tick_seconds=0.05))
    monkeypatch.setattr(controller, "STATE", state)

    async def nothing_overdue() -> None:
        return None

    monkeypatch.setattr(controller, "_replan_overdue", nothing_overdue)
    return state


async def test_a_node_change_during_a_round_is_planned_in_the_next_round(
        fresh_state: controller.State, monkeypatch: pytest.MonkeyPatch) -> None:
    generations: list[int] = []

    async def plan_round() -> None:
        generations.append(fresh_state.topology.generation)
        if len(generations) == 1:
            # While the first round awaits its writes, a node event lands (a not-ready taint lifted).
            await asyncio.sleep(0)
            fresh_state.topology.upsert_node(NodeInfo(name="n1", allocatable={"cpu": 8000}))

    monkeypatch.setattr(controller, "plan_round", plan_round)
    fresh_state.wake = asyncio.Event()
    task = asyncio.create_task(controller._planner_loop())
    try:
        async with asyncio.timeout(5):
            while len(generations) < 2:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert generations[1] > generations[0]  # the second round saw the node the first one missed


async def test_an_unchanged_cluster_is_not_planned_again(
        fresh_state: controller.State, monkeypatch: pytest.MonkeyPatch) -> None:
    rounds: list[int] = []

    async def plan_round() -> None:
        rounds.append(fresh_state.topology.generation)

    monkeypatch.setattr(controller, "plan_round", plan_round)
    fresh_state.wake = asyncio.Event()
    task = asyncio.create_task(controller._planner_loop())
    try:
        async with asyncio.timeout(5):
            while not rounds:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # six ticks with nothing new
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert rounds == [0]
