import pytest

from topology.kube import (
    PLANNED_NODE_ANNOTATION,
    hypernode_from_object,
    pod_request,
    pod_usage,
    topology_from_objects,
)
from topology.resources import GPU


def test_a_hypernode_object_with_regex_members_matches_nodes_by_name() -> None:
    topo = topology_from_objects(
        nodes=[{"metadata": {"name": f"node-{i}"}, "status": {"allocatable": {GPU: "8", "cpu": "16"}}} for i in range(3)],
        hypernodes=[{"metadata": {"name": "s0"}, "spec": {"tier": 1, "members": [
            {"type": "Node", "selector": {"regexMatch": {"pattern": "node-[01]"}}}]}}],
    )
    assert topo.domain_nodes("s0") == ["node-0", "node-1"]


def test_a_hypernode_without_tier_names_the_missing_field() -> None:
    with pytest.raises(ValueError, match=r"s0: spec\.tier is required"):
        hypernode_from_object({"metadata": {"name": "s0"}, "spec": {"members": []}})


def test_a_member_with_no_selector_names_its_index() -> None:
    with pytest.raises(ValueError, match=r"members\[0\]"):
        hypernode_from_object({"metadata": {"name": "s0"}, "spec": {"tier": 1, "members": [{"type": "Node", "selector": {}}]}})


def test_pod_request_is_the_larger_of_containers_sum_and_any_init_container() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "1"}}}, {"resources": {"limits": {GPU: "4"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "3"}}}],
    }
    assert pod_request(spec) == {"cpu": 3000, GPU: 4}


def test_terminated_pods_hold_no_capacity() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}}
    assert pod_usage(pod) is None


def test_planned_pods_hold_capacity_on_their_planned_node_before_binding() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "annotations": {PLANNED_NODE_ANNOTATION: "n1"}},
           "spec": {"containers": [{"resources": {"requests": {GPU: "2"}}}]}, "status": {"phase": "Pending"}}
    assert pod_usage(pod) == ("ns/p", "n1", {GPU: 2})
