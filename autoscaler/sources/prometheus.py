"""Metrics from Prometheus: one instant PromQL query per metric (`prometheus-api-client`).

The query must return a scalar or a vector with exactly one sample (as in Kthena); the
sample's own timestamp is the observation time, so a stale series is seen as stale.
Authentication is a bearer token or basic auth from a Secret (keys `token`, or `username`
and `password`): named per policy (read through the API), or mounted into the controller
as a volume whose directory `CALDERA_PROMETHEUS_AUTH_DIR` names (no Secret read rights needed). Any error gives a missing value, which never scales down.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_api_client import PrometheusConnect

from autoscaler.kpa import MetricSample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrometheusAuth:
    token: str | None = None
    username: str | None = None
    password: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def basic(self) -> tuple[str, str] | None:
        return (self.username, self.password or "") if self.username else None


def auth_from_secret(data: Mapping[str, str] | None) -> PrometheusAuth:
    """A Secret's `data` (base64) to credentials: `token`, or `username` and `password`."""
    if not data:
        raise ValueError("prometheus auth secret has no data; expected key 'token' or 'username'/'password'")
    decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
    if "token" in decoded:
        return PrometheusAuth(token=decoded["token"].strip())
    if "username" in decoded:
        return PrometheusAuth(username=decoded["username"], password=decoded.get("password", ""))
    raise ValueError(f"prometheus auth secret: expected key 'token' or 'username'/'password', got {sorted(decoded)}")


def auth_from_dir(path: str | os.PathLike[str]) -> PrometheusAuth:
    """Credentials from a mounted Secret volume: a `token` file, or `username`/`password`."""
    d = Path(path)
    if (d / "token").is_file():
        return PrometheusAuth(token=(d / "token").read_text().strip())
    if (d / "username").is_file():
        password = (d / "password").read_text().strip() if (d / "password").is_file() else ""
        return PrometheusAuth(username=(d / "username").read_text().strip(), password=password)
    raise ValueError(f"prometheus auth directory {d}: expected a file 'token' or 'username'/'password'")


@dataclass(frozen=True)
class PromMetric:
    name: str
    target: float
    server_url: str
    query: str

    def __post_init__(self) -> None:
        if not self.server_url.startswith(("http://", "https://")):
            raise ValueError(f"metric {self.name!r}: serverURL must be http(s), got {self.server_url!r}")


def single_value(result: Any) -> tuple[float, float] | None:
    """(value, timestamp) of a scalar or one-sample vector result; None otherwise."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        point = result  # a scalar result: [timestamp, "value"]
    elif isinstance(result, list):
        if len(result) != 1:
            return None
        point = result[0].get("value")
    elif isinstance(result, dict) and "value" in result:
        point = result["value"]
    else:
        point = result
    if not isinstance(point, (list, tuple)) or len(point) != 2:
        return None
    ts, raw = float(point[0]), float(point[1])
    return (raw, ts) if math.isfinite(raw) else None


class PrometheusSource:
    def __init__(self, auth: PrometheusAuth | None = None, timeout_s: float = 3.0) -> None:
        self.auth = auth or PrometheusAuth()
        self.timeout_s = timeout_s
        self._clients: dict[str, PrometheusConnect] = {}

    def _client(self, url: str) -> PrometheusConnect:
        if url not in self._clients:
            self._clients[url] = PrometheusConnect(url=url, headers=self.auth.headers() or None,
                                                   auth=self.auth.basic(), disable_ssl=False)
        return self._clients[url]

    def query(self, metric: PromMetric) -> MetricSample:
        try:
            result = self._client(metric.server_url).custom_query(
                metric.query, params={"timeout": f"{round(self.timeout_s * 1000)}ms"})
        except Exception as exc:  # the client raises requests' and its own errors alike
            log.warning("prometheus query for %s failed: %s", metric.name, exc)
            return MetricSample(metric.name, metric.target, None, None)
        got = single_value(result)
        if got is None:
            log.warning("prometheus query for %s: want one sample, got %r", metric.name, result)
            return MetricSample(metric.name, metric.target, None, None)
        value, ts = got
        return MetricSample(metric.name, metric.target, value, ts)

    async def collect(self, metrics: Sequence[PromMetric]) -> list[MetricSample]:
        return list(await asyncio.gather(*(asyncio.to_thread(self.query, m) for m in metrics)))
