"""The router's Prometheus metrics, in their own registry (one per router instance).

The per-request metrics (requests, latency, TTFT, tokens, plugin durations, prefix match)
are plain numbers updated without locks and turned into Prometheus samples only when
/metrics is scraped: prometheus_client takes a lock and walks the buckets in Python on
every update, which cost more CPU than routing the request. The router is one event-loop
thread, so nothing else updates them concurrently. The exposition is the same as
prometheus_client's (the same names, labels, buckets and `_created` series).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_PLUGIN_BUCKETS = (1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2)
_RATIO_BUCKETS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


class CounterValue:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramValue:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # bisect_left: the first bucket whose upper bound is >= amount (Prometheus' `le`).
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _Family:
    """A labelled metric family whose children are plain numbers (see the module docstring)."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        if not self.labelnames:
            self._children[()] = self._new()  # shown at zero from the start, as prometheus_client does

    def _new(self) -> Any:
        raise TypeError("abstract")

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            child = self._children[values] = self._new()
        return child

    def _samples(self, labels: dict[str, str], child: Any) -> Iterable[Sample]:
        raise TypeError("abstract")

    def collect(self) -> Metric:
        metric = Metric(self.name, self.documentation, self.kind)
        for values, child in list(self._children.items()):
            metric.samples.extend(self._samples(dict(zip(self.labelnames, values, strict=True)), child))
        return metric


def _created_series() -> bool:
    """prometheus_client's process-wide `_created` switch (`disable_created_metrics()`), so our
    families stay exactly like its own ones in the same process."""
    return bool(prometheus_metrics._use_created)


class FastCounter(_Family):
    kind = "counter"

    def _new(self) -> CounterValue:
        return CounterValue()

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def _samples(self, labels: dict[str, str], child: CounterValue) -> Iterable[Sample]:
        total = Sample(f"{self.name}_total", labels, child.value, None, None)
        if not _created_series():
            return (total,)
        return (total, Sample(f"{self.name}_created", labels, child.created, None, None))


class FastHistogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = _LATENCY_BUCKETS) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        super().__init__(name, documentation, labelnames)

    def _new(self) -> HistogramValue:
        return HistogramValue(self.bounds)

    def observe(self, amount: float) -> None:
        self.labels().observe(amount)

    def _samples(self, labels: dict[str, str], child: HistogramValue) -> Iterable[Sample]:
        out: list[Sample] = []
        acc = 0.0
        for le, count in zip(self._le, list(child.counts), strict=True):
            acc += count
            out.append(Sample(f"{self.name}_bucket", {**labels, "le": le}, acc, None, None))
        out.append(Sample(f"{self.name}_count", labels, acc, None, None))
        out.append(Sample(f"{self.name}_sum", labels, child.sum, None, None))
        if _created_series():
            out.append(Sample(f"{self.name}_created", labels, child.created, None, None))
        return out


class FamiliesCollector(Collector):
    def __init__(self, families: Sequence[_Family]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return [f.collect() for f in self.families]


@dataclass
class RouterMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = FastCounter("caldera_router_requests", "Requests handled, by outcome.",
                                    ["model", "path", "status", "route", "server"])
        self.duration = FastHistogram("caldera_router_request_duration_seconds", "End-to-end request latency.",
                                      ["model"], _LATENCY_BUCKETS)
        self.ttft = FastHistogram("caldera_router_ttft_seconds", "Time to the first upstream response byte.",
                                  ["model"], _LATENCY_BUCKETS)
        self.prefill_duration = Histogram("caldera_router_prefill_duration_seconds",
                                          "Prefill phase of disaggregated requests.", ["model"],
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = FastCounter("caldera_router_tokens", "Tokens, by kind (prompt, completion).",
                                  ["model", "kind"])
        self.plugin_duration = FastHistogram("caldera_router_plugin_duration_seconds",
                                             "Time spent in each scheduling plugin.", ["plugin"], _PLUGIN_BUCKETS)
        self.prefix_match = FastHistogram("caldera_router_prefix_match_ratio",
                                          "Fraction of the prompt cached on the chosen pod (router's estimate).",
                                          (), _RATIO_BUCKETS)
        r.register(FamiliesCollector([self.requests, self.duration, self.ttft, self.tokens,
                                       self.plugin_duration, self.prefix_match]))
        self.upstream_errors = Counter("caldera_router_upstream_errors", "Failed upstream attempts.",
                                       ["pod", "reason"], registry=r)
        # Read when scraped: the number of requests the router is serving right now.
        self.in_flight = 0
        self.active = Gauge("caldera_router_active_requests", "Requests in flight through the router.",
                            registry=r)
        self.active.set_function(lambda: self.in_flight)
        self.kv_events = Counter("caldera_router_kv_event_batches", "KV-event batches applied.", ["pod"],
                                 registry=r)
        self.kv_event_gaps = Counter("caldera_router_kv_event_gaps", "Sequence gaps in KV events.", ["pod"],
                                     registry=r)
        self.rejected = Counter("caldera_router_rejected", "Requests refused before routing, by status and code.",
                                ["status", "code"], registry=r)
        self.pd_prefill_skipped = Counter("caldera_router_pd_prefill_skipped",
                                          "Disaggregated requests whose prefill was skipped (cached).",
                                          registry=r)
        # One lookup per request for the children its outcome updates.
        self._done: dict[tuple[str, str, int, str, str], tuple[Callable[[float], None], ...]] = {}
        self._plugins: dict[str, Callable[[float], None]] = {}

    def request_done(self, model: str, path: str, status: int, route: str, server: str, elapsed_s: float,
                     ttft_s: float | None, prompt_tokens: int, completion_tokens: int) -> None:
        key = (model, path, status, route, server)
        children = self._done.get(key)
        if children is None:
            children = self._done[key] = (
                self.requests.labels(model, path, str(status), route, server).inc,
                self.duration.labels(model).observe, self.ttft.labels(model).observe,
                self.tokens.labels(model, "prompt").inc, self.tokens.labels(model, "completion").inc)
        requests, duration, ttft, prompt, completion = children
        requests(1.0)
        duration(elapsed_s)
        if ttft_s is not None:
            ttft(ttft_s)
        if prompt_tokens:
            prompt(prompt_tokens)
        if completion_tokens:
            completion(completion_tokens)

    def plugins_done(self, durations_s: dict[str, float]) -> None:
        plugins = self._plugins
        for plugin, seconds in durations_s.items():
            observe = plugins.get(plugin)
            if observe is None:
                observe = plugins[plugin] = self.plugin_duration.labels(plugin).observe
            observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
