"""Prometheus text → plain numbers: sums over label series, counter rates, histogram
quantiles over a window. Pure functions over parsed snapshots."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Snapshot:
    """One scrape of one pod: sample name and labels -> value; family name -> type."""

    at: float
    samples: Mapping[tuple[str, Labels], float]
    types: Mapping[str, str]


def parse(text: str, at: float) -> Snapshot:
    samples: dict[tuple[str, Labels], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return Snapshot(at, samples, types)


def family_type(snap: Snapshot, name: str) -> str | None:
    """The family's type; counters are listed without `_total` by the parser."""
    for candidate in (name, name.removesuffix("_total")):
        if candidate in snap.types:
            return snap.types[candidate]
    return None


def _matches(labels: Labels, selector: Mapping[str, str]) -> bool:
    d = dict(labels)
    return all(d.get(k) == v for k, v in selector.items())


def total(snap: Snapshot, name: str, selector: Mapping[str, str] | None = None) -> float | None:
    """Sum over the label series of one sample name (None if absent)."""
    selector = selector or {}
    names = (name, f"{name}_total") if family_type(snap, name) == "counter" else (name,)
    values = [v for (n, labels), v in snap.samples.items() if n in names and _matches(labels, selector)]
    return sum(values) if values else None


def counter_rate(old: Snapshot, new: Snapshot, name: str, selector: Mapping[str, str] | None = None) -> float | None:
    """Per-second increase between two snapshots; a reset (restart) counts from zero."""
    a, b = total(old, name, selector), total(new, name, selector)
    dt = new.at - old.at
    if a is None or b is None or dt <= 0:
        return None
    increase = b - a if b >= a else b
    return increase / dt


def buckets(snap: Snapshot, name: str, selector: Mapping[str, str] | None = None) -> dict[float, float]:
    """Cumulative bucket counts by upper bound, summed over the other labels."""
    selector = selector or {}
    out: dict[float, float] = {}
    for (n, labels), v in snap.samples.items():
        if n != f"{name}_bucket" or not _matches(labels, selector):
            continue
        le = dict(labels).get("le")
        if le is None:
            continue
        bound = math.inf if le in ("+Inf", "Inf") else float(le)
        out[bound] = out.get(bound, 0.0) + v
    return out


def bucket_delta(old: Snapshot | None, new: Snapshot, name: str,
                 selector: Mapping[str, str] | None = None) -> dict[float, float]:
    b = buckets(new, name, selector)
    if old is None:
        return b
    a = buckets(old, name, selector)
    if any(b.get(k, 0.0) < v for k, v in a.items()):
        return b  # the process restarted: everything since is new
    return {k: v - a.get(k, 0.0) for k, v in b.items()}


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """PromQL `histogram_quantile`: linear within the bucket, the highest finite bound
    if the rank falls in +Inf; None when no observations."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    bounds = sorted(cumulative)
    if not bounds or math.inf not in cumulative:
        return None
    count = cumulative[math.inf]
    if count <= 0:
        return None
    rank = q * count
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        c = cumulative[bound]
        if c >= rank:
            if bound == math.inf:
                finite = [b for b in bounds if b != math.inf]
                return finite[-1] if finite else None
            if c == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (c - prev_count)
        prev_bound, prev_count = bound, c
    return None


def merge(hists: Sequence[Mapping[float, float]]) -> dict[float, float]:
    out: dict[float, float] = {}
    for h in hists:
        for k, v in h.items():
            out[k] = out.get(k, 0.0) + v
    return out
