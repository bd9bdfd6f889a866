"""Metrics of every failure path, registered in the router's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ResilienceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.retries = Counter("caldera_router_retries", "Attempts retried on another pod, by reason.",
                               ["server", "reason"], registry=r)
        self.migrations = Counter("caldera_router_migrations", "Streams moved to another pod mid-way, by result.",
                                  ["server", "result"], registry=r)
        self.pd_prefill_retries = Counter("caldera_router_pd_prefill_retries",
                                          "P/D prefills retried on another prefill pod of the group, by reason.",
                                          ["server", "reason"], registry=r)
        self.pd_fallbacks = Counter("caldera_router_pd_fallbacks",
                                    "P/D requests with no prefill pod left: sent to the decode pod alone "
                                    "(decode_only) or refused (unavailable).", ["server", "result"], registry=r)
        self.rejections = Counter("caldera_router_rejections",
                                  "Requests refused by the guard (auth, overload, draining, queue...).",
                                  ["reason", "status"], registry=r)
        self.rate_limited = Counter("caldera_router_rate_limit_exceeded", "Requests refused by a rate limit.",
                                    ["route", "kind", "scope"], registry=r)
        self.rate_limit_unavailable = Counter("caldera_router_rate_limit_unavailable",
                                              "Requests allowed because the global limit's Redis was unreachable.",
                                              ["route"], registry=r)
        self.cancelled = Counter("caldera_router_client_disconnects",
                                 "Requests whose client went away (upstream cancelled).", registry=r)
        self.queue_size = Gauge("caldera_router_fairness_queue_size", "Requests waiting in the fair queue.",
                                ["model"], registry=r)
        self.queue_inflight = Gauge("caldera_router_fairness_inflight", "Requests admitted through the gate.",
                                    ["model"], registry=r)
        self.queue_wait = Histogram("caldera_router_fairness_queue_duration_seconds",
                                    "Time requests waited in the fair queue.", ["model"], buckets=_WAIT_BUCKETS,
                                    registry=r)
        self.draining = Gauge("caldera_router_draining", "1 while the router drains before exit.", registry=r)
        self.held = Gauge("caldera_router_held_requests", "Inference requests the router holds.", registry=r)
