"""The controller's status helpers: conditions keep their transition time, pods read like HPA."""

from __future__ import annotations

from autoscaler.controller import _conditions, pod_targets


def test_condition_transition_time_moves_only_when_the_status_flips() -> None:
    old = [{"type": "Ready", "status": "True", "reason": "Scaling", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    same = _conditions(old, {"Ready": ("True", "Scaling", "new message")}, 2)
    flipped = _conditions(old, {"Ready": ("False", "ConflictingAutoscaler", "HPA")}, 2)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["message"] == "new message"
    assert flipped[0]["lastTransitionTime"] != "2026-01-01T00:00:00Z"


def test_pods_are_read_with_readiness_and_termination() -> None:
    pods = [
        {"metadata": {"name": "a"}, "status": {"podIP": "127.1.0.2", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "b"}, "status": {"podIP": "127.1.0.3", "conditions": [{"type": "Ready", "status": "False"}]}},
        {"metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"},
         "status": {"podIP": "127.1.0.4", "conditions": [{"type": "Ready", "status": "True"}]}},
    ]
    assert [(p.name, p.ready, p.terminating) for p in pod_targets(pods)] == [
        ("a", True, False), ("b", False, False), ("c", True, True)]
