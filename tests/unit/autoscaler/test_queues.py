"""Volcano queue room (pure) and the heterogeneous optimiser kept within it."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.optimizer import OptimizerConfig, Placeable, Variant, greedy_plan, optimize
from autoscaler.queues import queue_of, queue_room, replica_request, replicas_that_fit

GPU = "nvidia.com/gpu"
NO_CHURN = OptimizerConfig(churn=0)


def queue(name: str, capability: dict[str, str] | None = None, allocated: dict[str, str] | None = None,
          **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name}, "spec": dict(spec)}
    if capability is not None:
        obj["spec"]["capability"] = capability
    if allocated is not None:
        obj["status"] = {"allocated": allocated, "state": "Open"}
    return obj


def podgroup(queue_name: str | None, phase: str, gpus: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"minMember": 1, "minResources": {GPU: str(gpus), "cpu": "1"}}
    if queue_name is not None:
        spec["queue"] = queue_name
    return {"metadata": {"namespace": "ns", "name": f"pg-{phase}"}, "spec": spec, "status": {"phase": phase}}


def serving(gpus: int, replicas: int = 1, workers: int = 0, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod = {"spec": {"containers": [{"name": "e", "resources": {"requests": {"cpu": "500m", GPU: str(gpus)}}}]}}
    return {"metadata": {"annotations": annotations or {}}, "spec": {"template": {"roles": [
        {"name": "r", "replicas": replicas, "workerReplicas": workers, "entryTemplate": pod, "workerTemplate": pod}]}}}


def test_room_is_capability_minus_allocated_and_waiting_podgroups() -> None:
    room = queue_room(queue("team-a", {GPU: "16"}, allocated={GPU: "4", "cpu": "2"}),
                      [podgroup("team-a", "Inqueue", 4), podgroup("team-a", "Running", 4),
                       podgroup("team-b", "Pending", 8)])
    assert room is not None
    assert room.left == {GPU: 8}
    assert room.describe(GPU) == "queue team-a has 8 nvidia.com/gpu left"


def test_without_allocated_status_unfinished_podgroups_count() -> None:
    room = queue_room(queue("team-a", {GPU: "16"}), [podgroup("team-a", "Running", 4), podgroup("team-a", "Pending", 2),
                                                    podgroup("team-a", "Completed", 8)])
    assert room is not None and room.left == {GPU: 10} and room.used_from == "PodGroups"


def test_podgroups_without_a_queue_belong_to_the_default_queue() -> None:
    room = queue_room(queue("default", {GPU: "8"}, allocated={}), [podgroup(None, "Pending", 3)])
    assert room is not None and room.left == {GPU: 5}


def test_deserved_and_guarantee_without_capability_cap_nothing() -> None:
    assert queue_room(queue("team-a", deserved={GPU: "8"}, guarantee={"resource": {GPU: "8"}})) is None


def test_bad_capability_names_the_queue_and_field() -> None:
    with pytest.raises(ValueError, match=r"Queue team-a: spec.capability: .*'lots'"):
        queue_room(queue("team-a", {GPU: "lots"}))


def test_queue_annotation_or_the_default_queue() -> None:
    assert queue_of(serving(1, annotations={"scheduling.volcano.sh/queue-name": "team-a"})) == "team-a"
    assert queue_of(serving(1)) == "default"


def test_replica_request_counts_every_pod_of_a_serving_group() -> None:
    assert replica_request(serving(4, replicas=2, workers=1)) == {GPU: 16, "cpu": 2000}


def test_replicas_that_fit_are_bound_by_the_scarcest_capped_resource() -> None:
    assert replicas_that_fit({GPU: 8, "cpu": 1000}, {GPU: 2, "cpu": 500, "memory": 10}) == (2, "cpu")
    assert replicas_that_fit({GPU: -4}, {GPU: 2}) == (0, GPU)
    assert replicas_that_fit({"cpu": 8}, {GPU: 2}) is None


# Cheap per unit of capacity (a): 1 GPU for 1 unit at 40; dear (b): 1 GPU for 1 unit at 100.
CHEAP = Variant("cheap", cost=40, capacity=1, min_replicas=0, max_replicas=10, queue="team-a", request={GPU: 1})
DEAR = Variant("dear", cost=100, capacity=1, min_replicas=0, max_replicas=10, queue="team-b", request={GPU: 1})


def test_cheaper_variant_capped_by_its_queue_leaves_the_rest_to_the_other() -> None:
    plan = optimize([CHEAP, DEAR], demand=6, placeable=Placeable(queues={"team-a": {GPU: 4}}), config=NO_CHURN)
    assert plan.replicas == {"cheap": 4, "dear": 2}
    assert "queue team-a has 4 nvidia.com/gpu left, 1 per replica" in plan.reasons["cheap"]
    assert "queue" not in plan.reasons["dear"]


def test_variants_sharing_a_queue_share_its_room() -> None:
    shared = [CHEAP, Variant("mid", cost=60, capacity=1, min_replicas=0, max_replicas=10, queue="team-a",
                             request={GPU: 1}), DEAR]
    plan = optimize(shared, demand=8, placeable=Placeable(queues={"team-a": {GPU: 5}}), config=NO_CHURN)
    assert plan.replicas["cheap"] + plan.replicas["mid"] == 5
    assert plan.replicas["dear"] == 3


def test_queue_room_is_shared_by_request_size() -> None:
    big = Variant("big", cost=50, capacity=4, min_replicas=0, max_replicas=4, queue="team-a", request={GPU: 4})
    plan = optimize([big, CHEAP, DEAR], demand=10, placeable=Placeable(queues={"team-a": {GPU: 6}}), config=NO_CHURN)
    assert 4 * plan.replicas["big"] + plan.replicas["cheap"] <= 6
    assert plan.capacity >= 10


def test_queue_full_leaves_a_shortfall_but_keeps_minimum_and_existing_replicas() -> None:
    only = Variant("only", cost=40, capacity=1, min_replicas=2, max_replicas=10, current=3, queue="team-a",
                   request={GPU: 1})
    plan = optimize([only], demand=8, placeable=Placeable(queues={"team-a": {GPU: -2}}), config=NO_CHURN)
    assert plan.replicas == {"only": 3}
    assert plan.shortfall == 5
    assert plan.summary().endswith("cluster or queue full")


def test_minimum_replicas_hold_even_beyond_the_queue() -> None:
    floor = Variant("floor", cost=40, capacity=1, min_replicas=3, max_replicas=10, queue="team-a", request={GPU: 1})
    plan = optimize([floor], demand=0, placeable=Placeable(queues={"team-a": {GPU: 1}}), config=NO_CHURN)
    assert plan.replicas == {"floor": 3}


def test_queue_without_room_data_caps_nothing() -> None:
    plan = optimize([CHEAP, DEAR], demand=6, placeable=Placeable(queues={"team-c": {GPU: 0}}), config=NO_CHURN)
    assert plan.replicas == {"cheap": 6, "dear": 0}


def test_cheapest_first_fallback_shares_the_queue_room_too() -> None:
    plan = greedy_plan([CHEAP, DEAR], demand=6, need=6, caps=[None, None], started=0.0, status="UNKNOWN",
                       queues={"team-a": {GPU: 4}})
    assert plan.replicas == {"cheap": 4, "dear": 2}
