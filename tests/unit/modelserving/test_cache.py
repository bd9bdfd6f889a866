from __future__ import annotations

from typing import Any

from modelserving import labels as L
from modelserving.cache import Cache

KEY = ("ns", "sample")


def _pod(name: str, uid: str, group: str = "sample-0", rid: str = "prefill-0") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "labels": {
        L.NAME_LABEL: "sample", L.GROUP_NAME_LABEL: group, L.ROLE_LABEL: rid.rsplit("-", 1)[0], L.ROLE_ID_LABEL: rid}}}


def test_watch_events_are_filed_under_their_modelserving() -> None:
    cache = Cache()
    assert cache.observe("Pod", "ADDED", _pod("sample-0-prefill-0-0", "a")) == KEY
    assert set(cache.observed(KEY).pods) == {"sample-0-prefill-0-0"}


def test_objects_without_the_name_label_are_ignored() -> None:
    assert Cache().observe("Pod", "ADDED", {"metadata": {"name": "x", "labels": {}}}) is None


def test_a_late_delete_event_of_an_old_namesake_does_not_drop_the_new_pod() -> None:
    cache = Cache()
    cache.observe("Pod", "ADDED", _pod("sample-0-prefill-0-0", "new"))
    cache.observe("Pod", "DELETED", _pod("sample-0-prefill-0-0", "old"))
    assert "sample-0-prefill-0-0" in cache.observed(KEY).pods


def test_pods_of_an_issued_group_deletion_look_terminating_until_gone() -> None:
    cache = Cache()
    cache.observe("Pod", "ADDED", _pod("sample-0-prefill-0-0", "a"))
    cache.mark_deleted(KEY, {L.NAME_LABEL: "sample", L.GROUP_NAME_LABEL: "sample-0"})
    obs = cache.observed(KEY)
    assert obs.pods["sample-0-prefill-0-0"]["metadata"]["deletionTimestamp"]
    assert obs.deleting_groups == {0}
    cache.observe("Pod", "DELETED", _pod("sample-0-prefill-0-0", "a"))
    assert cache.observed(KEY).deleting_groups == set()


def test_role_replica_deletion_is_remembered_per_role_replica() -> None:
    cache = Cache()
    cache.observe("Pod", "ADDED", _pod("sample-0-prefill-1-0", "a", rid="prefill-1"))
    cache.mark_deleted(KEY, {L.NAME_LABEL: "sample", L.GROUP_NAME_LABEL: "sample-0", L.ROLE_ID_LABEL: "prefill-1"})
    assert cache.observed(KEY).deleting_roles == {(0, "prefill", 1)}


def test_kick_sets_the_trigger_and_counts_in_queue_depth() -> None:
    cache = Cache()
    cache.modelservings[KEY] = {"metadata": {"name": "sample", "namespace": "ns"}}
    cache.kick(KEY)
    assert cache.queue_depth() == 1
    cache.trigger(KEY).clear()
    assert cache.queue_depth() == 0


def test_queue_depth_ignores_children_of_unknown_modelservings() -> None:
    cache = Cache()
    cache.kick(("ns", "gone"))
    assert cache.queue_depth() == 0


def test_leftovers_of_a_deleted_namesake_are_not_counted() -> None:
    cache = Cache()
    old = _pod("sample-0-prefill-0-0", "a")
    old["metadata"]["ownerReferences"] = [{"kind": "ModelServing", "name": "sample", "uid": "old-ms"}]
    cache.observe("Pod", "ADDED", old)
    assert cache.observed(KEY, "new-ms").pods == {}
    assert set(cache.observed(KEY, "old-ms").pods) == {"sample-0-prefill-0-0"}


def _versioned(rv: str, node: str = "", uid: str = "a") -> dict[str, Any]:
    pod = _pod("sample-0-prefill-0-0", uid)
    pod["metadata"]["resourceVersion"] = rv
    pod["spec"] = {"nodeName": node}
    return pod


def test_a_write_response_older_than_the_watched_copy_does_not_overwrite_it() -> None:
    cache = Cache()
    cache.observe("Pod", "MODIFIED", _versioned("12", node="n1"))  # the watch: bound already
    cache.observe("Pod", "ADDED", _versioned("10"))  # the create's response, arriving late
    assert cache.observed(KEY).pods["sample-0-prefill-0-0"]["spec"]["nodeName"] == "n1"
    cache.observe("Pod", "MODIFIED", _versioned("13", node="n2"))
    assert cache.observed(KEY).pods["sample-0-prefill-0-0"]["spec"]["nodeName"] == "n2"


def test_a_write_response_after_the_deletion_does_not_resurrect_the_pod() -> None:
    cache = Cache()
    cache.observe("Pod", "ADDED", _versioned("10"))
    cache.observe("Pod", "DELETED", _versioned("11"))
    cache.observe("Pod", "MODIFIED", _versioned("10"))  # a patch response that lost the race
    assert "sample-0-prefill-0-0" not in cache.observed(KEY).pods
    cache.observe("Pod", "ADDED", _versioned("20", uid="b"))  # the namesake that replaces it
    assert cache.observed(KEY).pods["sample-0-prefill-0-0"]["metadata"]["uid"] == "b"
