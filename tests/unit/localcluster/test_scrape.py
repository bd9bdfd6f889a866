from __future__ import annotations

from typing import Any

from caldera.localcluster.scrape import label_name, target_group


def _pod(annotations: dict[str, str], phase: str = "Running", ports: list[int] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "annotations": annotations,
                     "labels": {"app.kubernetes.io/name": "x"}},
        "spec": {"nodeName": "node-1",
                 "containers": [{"name": "c", "ports": [{"containerPort": p} for p in ports or []]}]},
        "status": {"phase": phase, "podIP": "127.1.1.4"},
    }


def test_annotated_pod_is_scraped_at_pod_ip_and_annotated_port() -> None:
    group = target_group(_pod({"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}))
    assert group is not None and group["targets"] == ["127.1.1.4:9100"]


def test_port_defaults_to_first_container_port() -> None:
    group = target_group(_pod({"prometheus.io/scrape": "true"}, ports=[8000, 9000]))
    assert group is not None and group["targets"] == ["127.1.1.4:8000"]


def test_path_annotation_sets_metrics_path() -> None:
    group = target_group(_pod({"prometheus.io/scrape": "true", "prometheus.io/port": "1",
                                "prometheus.io/path": "/stats"}))
    assert group is not None and group["labels"]["__metrics_path__"] == "/stats"


def test_labels_carry_namespace_pod_and_sanitised_pod_labels() -> None:
    group = target_group(_pod({"prometheus.io/scrape": "true"}, ports=[1]))
    assert group is not None
    assert {k: group["labels"][k] for k in ("namespace", "pod", "app_kubernetes_io_name")} == {
        "namespace": "ns", "pod": "p", "app_kubernetes_io_name": "x"}


def test_unannotated_pod_is_not_scraped() -> None:
    assert target_group(_pod({}, ports=[1])) is None


def test_pending_pod_is_not_scraped() -> None:
    assert target_group(_pod({"prometheus.io/scrape": "true"}, phase="Pending", ports=[1])) is None


def test_label_name_never_starts_with_a_digit() -> None:
    assert label_name("1a.b") == "_1a_b"
