from __future__ import annotations

from dataclasses import replace

from modelserving.observed import PodState
from modelserving.recovery import Action, decide

NOW = 1000.0


def _pod(k: int, **kw: object) -> PodState:
    base = PodState(name=f"s-0-r-0-{k}", uid=f"u{k}", group="s-0", ordinal=0, role="r", role_id="r-0",
                    role_index=0, worker_index=k, revision="a", role_hash="h", phase="Running", ready=True,
                    terminating=False, deletion_cost=0, restarts=0, failed_since=None)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_complete_healthy_replica_needs_nothing() -> None:
    assert decide("RoleRecreate", 2, {0: _pod(0), 1: _pod(1)}, 0, NOW).action is Action.NOTHING


def test_missing_pod_under_role_recreate_recreates_the_role() -> None:
    assert decide("RoleRecreate", 2, {0: _pod(0)}, 0, NOW).action is Action.RECREATE_ROLE


def test_missing_pod_under_servinggroup_recreate_recreates_the_group() -> None:
    assert decide("ServingGroupRecreate", 2, {1: _pod(1)}, 0, NOW).action is Action.RECREATE_GROUP


def test_missing_pod_under_none_creates_only_that_pod() -> None:
    d = decide("None", 3, {0: _pod(0), 2: _pod(2)}, 0, NOW)
    assert d.action is Action.CREATE_MISSING
    assert d.missing == (1,)


def test_terminating_pod_makes_the_replica_wait() -> None:
    assert decide("RoleRecreate", 2, {0: _pod(0, terminating=True)}, 0, NOW).action is Action.WAIT


def test_failed_pod_waits_out_the_grace_period() -> None:
    d = decide("RoleRecreate", 1, {0: _pod(0, phase="Failed", ready=False, failed_since=NOW - 10)}, 30, NOW)
    assert d.action is Action.WAIT
    assert d.wait_seconds == 20


def test_failed_pod_is_deleted_after_the_grace_period_with_uid_precondition() -> None:
    d = decide("None", 1, {0: _pod(0, phase="Failed", ready=False, failed_since=NOW - 31)}, 30, NOW)
    assert d.action is Action.DELETE_POD
    assert (d.pods, d.uids) == (("s-0-r-0-0",), ("u0",))


def test_restarted_container_that_is_ready_again_is_left_alone() -> None:
    assert decide("RoleRecreate", 1, {0: _pod(0, restarts=2)}, 0, NOW).action is Action.NOTHING


def test_restarted_container_not_ready_counts_as_failed() -> None:
    d = decide("RoleRecreate", 1, {0: _pod(0, restarts=1, ready=False, failed_since=NOW)}, 0, NOW)
    assert d.action is Action.DELETE_POD


def test_pods_beyond_worker_replicas_are_deleted() -> None:
    d = decide("RoleRecreate", 1, {0: _pod(0), 1: _pod(1)}, 0, NOW)
    assert d.action is Action.DELETE_POD
    assert d.pods == ("s-0-r-0-1",)
