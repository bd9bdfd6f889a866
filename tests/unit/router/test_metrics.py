"""The router's per-request metrics: cheap to update, exposed exactly as prometheus_client would."""

from __future__ import annotations

import re
import subprocess
import sys

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from router.metrics import FamiliesCollector, FastCounter, FastHistogram, RouterMetrics


def _without_created(text: str) -> str:
    return re.sub(r"^(\S+_created\S*) \S+$", r"\1 T", text, flags=re.MULTILINE)


def test_histogram_exposition_matches_prometheus_client() -> None:
    buckets = (0.001, 0.01, 0.1, 1.0)
    values = [0.0005, 0.001, 0.002, 0.01, 0.5, 3.0, 0.1]
    ours, ref = CollectorRegistry(), CollectorRegistry()
    fast = FastHistogram("lat_seconds", "Latency.", ["model"], buckets)
    ours.register(FamiliesCollector([fast]))
    reference = Histogram("lat_seconds", "Latency.", ["model"], buckets=buckets, registry=ref)
    for v in values:
        fast.labels("m").observe(v)
        reference.labels("m").observe(v)
    assert _without_created(generate_latest(ours).decode()) == _without_created(generate_latest(ref).decode())


def test_counter_exposition_matches_prometheus_client() -> None:
    ours, ref = CollectorRegistry(), CollectorRegistry()
    fast = FastCounter("hits", "Hits.", ["kind"])
    ours.register(FamiliesCollector([fast]))
    reference = Counter("hits", "Hits.", ["kind"], registry=ref)
    for kind, n in (("a", 1), ("b", 3), ("a", 2)):
        fast.labels(kind).inc(n)
        reference.labels(kind).inc(n)
    assert _without_created(generate_latest(ours).decode()) == _without_created(generate_latest(ref).decode())


def test_an_observation_on_a_bucket_bound_counts_in_that_bucket() -> None:
    h = FastHistogram("x", "X.", (), (0.1, 1.0))
    h.observe(0.1)
    text = generate_latest(_registry_of(h)).decode()
    assert 'x_bucket{le="0.1"} 1.0' in text


def test_an_unlabelled_histogram_is_exposed_at_zero_before_any_observation() -> None:
    text = generate_latest(_registry_of(FastHistogram("y", "Y.", (), (1.0,)))).decode()
    assert 'y_bucket{le="+Inf"} 0.0' in text and "y_count 0.0" in text


def test_active_requests_are_read_when_scraped() -> None:
    m = RouterMetrics()
    m.in_flight += 3
    assert "caldera_router_active_requests 3.0" in m.render().decode()


def test_request_done_counts_request_latency_and_tokens() -> None:
    m = RouterMetrics()
    m.request_done("chat", "/v1/completions", 200, "default/chat", "default/srv", 0.02, 0.01, 8, 4)
    m.request_done("chat", "/v1/completions", 200, "default/chat", "default/srv", 0.03, None, 8, 0)
    text = m.render().decode()
    assert ('caldera_router_requests_total{model="chat",path="/v1/completions",route="default/chat",'
            'server="default/srv",status="200"} 2.0') in text
    assert 'caldera_router_request_duration_seconds_count{model="chat"} 2.0' in text
    assert 'caldera_router_ttft_seconds_count{model="chat"} 1.0' in text
    assert 'caldera_router_tokens_total{kind="prompt",model="chat"} 16.0' in text
    assert 'caldera_router_tokens_total{kind="completion",model="chat"} 4.0' in text


def test_plugin_durations_are_observed_per_plugin() -> None:
    m = RouterMetrics()
    m.plugins_done({"scorer/queue": 2e-6, "picker/max-score": 1e-6})
    m.plugins_done({"scorer/queue": 3e-6, "picker/max-score": 1e-6})
    text = m.render().decode()
    assert 'caldera_router_plugin_duration_seconds_count{plugin="scorer/queue"} 2.0' in text
    assert 'caldera_router_plugin_duration_seconds_bucket{le="5e-06",plugin="scorer/queue"} 2.0' in text


def test_serving_process_freezes_startup_objects_and_collects_rarely() -> None:
    code = ("import gc; from router.server import tune_gc_for_serving; tune_gc_for_serving(); "
            "print(gc.get_freeze_count() > 0, gc.get_threshold()[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "True" and int(out[1]) >= 10_000


def _registry_of(family: FastHistogram) -> CollectorRegistry:
    r = CollectorRegistry()
    r.register(FamiliesCollector([family]))
    return r
