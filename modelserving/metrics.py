"""Prometheus metrics of the ModelServing controller."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("caldera_modelserving_reconciles_total", "ModelServing reconciles by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "caldera_modelserving_reconcile_duration_seconds", "Time to plan and apply one reconcile.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_ERRORS = Counter("caldera_modelserving_reconcile_errors_total", "Reconciles that raised.", ["kind"])
QUEUE_DEPTH = Gauge("caldera_modelserving_queue_depth", "ModelServings waiting to be reconciled.")
MODELSERVINGS = Gauge("caldera_modelserving_objects", "ModelServings this controller reconciles.")
API_REQUESTS = Counter("caldera_controller_api_requests_total", "Kubernetes API requests made by the controller.",
                       ["verb", "resource"])
WRITES = Counter("caldera_modelserving_writes_total", "Objects written by reconciles.", ["kind", "verb"])
