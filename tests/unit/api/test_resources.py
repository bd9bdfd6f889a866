"""Pod and ServingGroup requests, counted as the scheduler counts them."""

from decimal import Decimal
from typing import Any

from caldera.k8s.pod import PodSpec
from caldera.k8s.resources import GPU, pod_requests
from modelserving.api import ModelServing


def _pod(**spec: Any) -> PodSpec:
    return PodSpec.model_validate(spec)


def test_requests_default_to_limits() -> None:
    pod = _pod(containers=[{"name": "a", "resources": {"limits": {GPU: 2, "cpu": "2"}, "requests": {"cpu": "500m"}}}])
    assert pod_requests(pod) == {GPU: Decimal(2), "cpu": Decimal("0.5")}


def test_containers_add_up() -> None:
    pod = _pod(containers=[
        {"name": "a", "resources": {"requests": {"memory": "1Gi"}}},
        {"name": "b", "resources": {"requests": {"memory": "1Gi"}}},
    ])
    assert pod_requests(pod) == {"memory": Decimal(2 * 2**30)}


def test_a_large_init_container_sets_the_peak() -> None:
    pod = _pod(
        initContainers=[{"name": "download", "resources": {"requests": {"cpu": "4"}}}],
        containers=[{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
    )
    assert pod_requests(pod) == {"cpu": Decimal(4)}


def test_sidecars_run_beside_the_app_containers_and_overhead_is_added() -> None:
    pod = _pod(
        initContainers=[{"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "250m"}}}],
        containers=[{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
        overhead={"cpu": "100m"},
    )
    assert pod_requests(pod) == {"cpu": Decimal("1.35")}


def test_serving_group_of_the_seed_example_requests_24_gpus(example: Any) -> None:
    ms = ModelServing.model_validate(example("modelserving-network-topology.yaml"))
    prefill = ms.spec.template.role("prefill")
    assert prefill.requests_per_replica()[GPU] == 8
    assert ms.spec.template.requests()[GPU] == 24
