"""Metrics scraped from the target's pods (`GET http://<podIP>:<port><path>`).

Per metric the value is a *total over pods*, the unit the KPA divides by the per-replica
target: gauges are summed over label series and pods, counters become per-second rates
over the window and are summed, histograms become a quantile of the window's
observations (all pods' buckets merged) times the number of pods that reported, so that
``value / target`` is again a replica count (HPA's average-metric rule).

Pods are handled like HPA: pods not Ready are not scraped and only count on the way up
(as zero); Ready pods that gave no value are reported as `missing_pods`, which the KPA
counts at target on the way down. Terminating pods are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiohttp

from autoscaler.kpa import MetricSample
from autoscaler.sources import series

log = logging.getLogger(__name__)

Kind = Literal["auto", "gauge", "counter", "histogram"]


@dataclass(frozen=True)
class PodTarget:
    name: str
    ip: str | None
    ready: bool
    terminating: bool = False


@dataclass(frozen=True)
class PodMetric:
    name: str  # the metric's key in the policy
    target: float
    metric: str | None = None  # the exposed family name; defaults to `name`
    kind: Kind = "auto"
    quantile: float = 0.95
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.metric or self.name


@dataclass(frozen=True)
class ScrapeConfig:
    port: int = 8100
    path: str = "/metrics"
    timeout_s: float = 3.0
    window_s: float = 60.0
    keep_s: float = 300.0

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be within 1..65535, got {self.port}")
        if not self.path.startswith("/"):
            raise ValueError(f"uri must start with '/', got {self.path!r}")
        if self.window_s <= 0 or self.timeout_s <= 0:
            raise ValueError("window and timeout must be > 0 seconds")


@dataclass
class History:
    """Recent snapshots per pod, oldest first."""

    snapshots: dict[str, list[series.Snapshot]] = field(default_factory=dict)

    def add(self, pod: str, snap: series.Snapshot, keep_s: float) -> None:
        snaps = [s for s in self.snapshots.get(pod, []) if snap.at - s.at <= keep_s]
        snaps.append(snap)
        self.snapshots[pod] = snaps

    def forget_except(self, pods: set[str]) -> None:
        for name in list(self.snapshots):
            if name not in pods:
                del self.snapshots[name]

    def window(self, pod: str, now: float, window_s: float) -> tuple[series.Snapshot | None, series.Snapshot | None]:
        """(oldest snapshot inside the window, newest snapshot)."""
        snaps = self.snapshots.get(pod, [])
        if not snaps:
            return None, None
        inside = [s for s in snaps if now - s.at <= window_s]
        newest = snaps[-1]
        old = inside[0] if inside and inside[0] is not newest else None
        if old is None and len(snaps) >= 2:
            old = snaps[-2]  # scrapes sparser than the window: use the previous one
        return old, newest


def evaluate(history: History, pods: Sequence[PodTarget], metrics: Sequence[PodMetric], now: float,
             config: ScrapeConfig, fresh: set[str]) -> list[MetricSample]:
    """Samples from what `history` holds; `fresh` names the pods scraped this round."""
    live = [p for p in pods if not p.terminating]
    ready = [p for p in live if p.ready]
    out: list[MetricSample] = []
    for m in metrics:
        values: list[float] = []
        hists: list[dict[float, float]] = []
        missing = 0
        for pod in ready:
            if pod.name not in fresh:
                missing += 1
                continue
            old, new = history.window(pod.name, now, config.window_s)
            assert new is not None
            kind = m.kind if m.kind != "auto" else (series.family_type(new, m.family) or "gauge")
            value: float | None
            if kind == "counter":
                value = None if old is None else series.counter_rate(old, new, m.family, m.labels)
            elif kind == "histogram":
                delta = series.bucket_delta(old, new, m.family, m.labels)
                value = None if not delta else 0.0
                if delta:
                    hists.append(delta)
            else:
                value = series.total(new, m.family, m.labels)
            if value is None:
                missing += 1
            elif kind != "histogram":
                values.append(value)
        if hists:
            q = series.quantile(m.quantile, series.merge(hists))
            # A window without requests has no latency: the metric is absent, not zero.
            total = None if q is None else q * len(hists)
            if q is None:
                missing += len(hists)
        else:
            total = sum(values) if values else None
        if not ready:
            total = None
        observed = now if total is not None else None
        out.append(MetricSample(m.name, m.target, total, observed, missing_pods=missing if total is not None else 0))
    return out


class PodScraper:
    """Keeps per-pod history between ticks; one instance per scaled target."""

    def __init__(self, config: ScrapeConfig | None = None) -> None:
        self.config = config or ScrapeConfig()
        self.history = History()

    async def _fetch(self, session: aiohttp.ClientSession, pod: PodTarget) -> tuple[str, str | None]:
        url = f"http://{pod.ip}:{self.config.port}{self.config.path}"
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    log.debug("scrape %s: HTTP %s", url, resp.status)
                    return pod.name, None
                return pod.name, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("scrape %s failed: %s", url, exc)
            return pod.name, None

    async def collect(self, pods: Sequence[PodTarget], metrics: Sequence[PodMetric],
                      now: float | None = None) -> list[MetricSample]:
        now = time.time() if now is None else now
        targets = [p for p in pods if p.ready and not p.terminating and p.ip]
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            results = await asyncio.gather(*(self._fetch(session, p) for p in targets))
        fresh: set[str] = set()
        for name, text in results:
            if text is None:
                continue
            try:
                snap = series.parse(text, now)
            except ValueError as exc:
                log.warning("pod %s: unparsable metrics: %s", name, exc)
                continue
            self.history.add(name, snap, self.config.keep_s)
            fresh.add(name)
        self.history.forget_except({p.name for p in pods})
        return evaluate(self.history, pods, metrics, now, self.config, fresh)
