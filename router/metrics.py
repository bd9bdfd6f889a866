"""The router's Prometheus metrics, in their own registry (one per router instance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_PLUGIN_BUCKETS = (1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2)


@dataclass
class RouterMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("caldera_router_requests", "Requests handled, by outcome.",
                                ["model", "path", "status", "route", "server"], registry=r)
        self.duration = Histogram("caldera_router_request_duration_seconds", "End-to-end request latency.",
                                  ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("caldera_router_ttft_seconds", "Time to the first upstream response byte.",
                              ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.prefill_duration = Histogram("caldera_router_prefill_duration_seconds",
                                          "Prefill phase of disaggregated requests.", ["model"],
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("caldera_router_tokens", "Tokens, by kind (prompt, completion).",
                              ["model", "kind"], registry=r)
        self.plugin_duration = Histogram("caldera_router_plugin_duration_seconds",
                                         "Time spent in each scheduling plugin.", ["plugin"],
                                         buckets=_PLUGIN_BUCKETS, registry=r)
        self.prefix_match = Histogram("caldera_router_prefix_match_ratio",
                                      "Fraction of the prompt cached on the chosen pod (router's estimate).",
                                      buckets=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0), registry=r)
        self.upstream_errors = Counter("caldera_router_upstream_errors", "Failed upstream attempts.",
                                       ["pod", "reason"], registry=r)
        self.active = Gauge("caldera_router_active_requests", "Requests in flight through the router.",
                            registry=r)
        self.kv_events = Counter("caldera_router_kv_event_batches", "KV-event batches applied.", ["pod"],
                                 registry=r)
        self.kv_event_gaps = Counter("caldera_router_kv_event_gaps", "Sequence gaps in KV events.", ["pod"],
                                     registry=r)
        self.rejected = Counter("caldera_router_rejected", "Requests refused before routing, by status and code.",
                                ["status", "code"], registry=r)
        self.pd_prefill_skipped = Counter("caldera_router_pd_prefill_skipped",
                                          "Disaggregated requests whose prefill was skipped (cached).",
                                          registry=r)

        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """Labelled children are cached: prometheus_client's labels() costs microseconds."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(self, model: str, path: str, status: int, route: str, server: str, elapsed_s: float,
                     ttft_s: float | None, prompt_tokens: int, completion_tokens: int) -> None:
        self._child(self.requests, model, path, str(status), route, server).inc()
        self._child(self.duration, model).observe(elapsed_s)
        if ttft_s is not None:
            self._child(self.ttft, model).observe(ttft_s)
        if prompt_tokens:
            self._child(self.tokens, model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._child(self.tokens, model, "completion").inc(completion_tokens)

    def plugins_done(self, durations_s: dict[str, float]) -> None:
        for plugin, seconds in durations_s.items():
            self._child(self.plugin_duration, plugin).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
