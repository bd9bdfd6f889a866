"""Heterogeneous scaling within a Volcano queue: the cheaper variant's queue has room for one
more replica only, so the optimiser stops asking for it there and carries the rest of the
demand with the dearer variant (in the default queue), saying why."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from caldera.localcluster import wait
from caldera.localcluster.session import LocalCluster

pytestmark = pytest.mark.cluster

CAPACITY = "autoscaling.caldera.dev/capacity"
QUEUE = "scheduling.volcano.sh/queue-name"
VOLCANO = ("scheduling.volcano.sh", "v1beta1", "queues")


@pytest.fixture
def small_queue(local_cluster: LocalCluster) -> Iterator[str]:
    """A queue that holds 2 GPUs at most."""
    name = f"as-q-{uuid.uuid4().hex[:6]}"
    api = local_cluster.api_client()
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(*VOLCANO, {
        "apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "Queue", "metadata": {"name": name},
        "spec": {"weight": 1, "reclaimable": False,
                 "capability": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "2"}}})
    wait.until(lambda: (cast(dict[str, Any], custom.get_cluster_custom_object(*VOLCANO, name)).get("status")
                        or {}).get("state") == "Open", 60, f"queue {name} Open")

    def deleted() -> bool:
        # Volcano refuses to delete a queue while PodGroups still sit in it.
        try:
            custom.delete_cluster_custom_object(*VOLCANO, name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            if exc.status not in (400, 403, 409, 422):
                raise
        return False

    try:
        yield name
    finally:
        wait.until(deleted, 120, f"queue {name} deleted")
        api.close()


def param(name: str, cost: int, hi: int, namespace: str, prometheus_url: str) -> dict[str, Any]:
    query = (f'sum(vllm:num_requests_running{{namespace="{namespace}",modelserving_volcano_sh_name="{name}"}}) '
             f'+ sum(vllm:num_requests_waiting{{namespace="{namespace}",modelserving_volcano_sh_name="{name}"}})')
    return {"target": {"targetRef": {"kind": "ModelServing", "name": name},
                       "metricSources": {"in_flight": {"prometheus": {"serverURL": prometheus_url, "query": query}}}},
            "cost": cost, "minReplicas": 0, "maxReplicas": hi}


def test_optimiser_stops_asking_beyond_the_queue_and_moves_the_rest_to_the_other_variant(
        small_queue: str, as_env: Any) -> None:
    env = as_env
    # cheap: 1 unit for 50 in the 2-GPU queue; dear: 1 unit for 100 in the default queue.
    env.create("modelservings", env.modelserving("cheap", [env.engine_role("engine")], replicas=1,
                                                 annotations={CAPACITY: "1", QUEUE: small_queue}))
    env.create("modelservings", env.modelserving("dear", [env.engine_role("engine")], replicas=0,
                                                 annotations={CAPACITY: "1"}))
    urls = env.serving("cheap", 1)
    env.create("autoscalingpolicies", {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1", "kind": "AutoscalingPolicy",
        "metadata": {"name": "pool", "annotations": {"autoscaling.caldera.dev/stable-window": "20s",
                                                     "autoscaling.caldera.dev/panic-window": "4s"}},
        "spec": {"metrics": [{"name": "in_flight", "targetValue": "2"}],
                 "heterogeneousTarget": {"costExpansionRatePercent": 200, "params": [
                     param("cheap", 50, 6, env.namespace, env.cluster.prometheus_url),
                     param("dear", 100, 6, env.namespace, env.cluster.prometheus_url)]}}})
    load = env.Load(urls, concurrency=8).start()  # 8 in flight: 4 units of demand

    # 1 GPU left while the second cheap replica starts, 0 once Volcano has allocated it.
    explained = re.compile(rf"cheap: [^|]*queue {small_queue} has [01] nvidia.com/gpu left")

    def explaining_message() -> str | None:
        message = str(next(c["message"] for c in env.get("autoscalingpolicies", "pool")["status"]["conditions"]
                           if c["type"] == "Ready"))
        return message if explained.search(message) else None

    try:
        wait.until(lambda: env.replicas("dear") >= 1, 120, "the dearer variant asked for")
        # The status is written after the scale patches, so the decision's explanation may
        # land a moment after the dearer variant's replicas do.
        message = wait.until(explaining_message, 60,
                             "the decision that asked for the dearer variant explained in the status")
    finally:
        load.stop()
    assert env.replicas("cheap") == 2, message
