"""Builds deploy/dashboards/caldera.json, the Grafana dashboard, from the panel list below.

    python deploy/dashboards/build.py           # write caldera.json (then python deploy/helm/sync.py)
    python deploy/dashboards/build.py --check   # exit 1 if caldera.json is out of date

Every query names only metrics the components export; tests/unit/deploy/test_observability.py
parses each one with promtool and checks its metric names against the live registries.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "caldera.json"
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: dict[str, str]  # legend -> PromQL
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


def _quantiles(metric: str, by: str, selector: str = "") -> dict[str, str]:
    return {
        f"p{q} {{{{{by}}}}}": (
            f"histogram_quantile(0.{q}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))"
        )
        for q in ("50", "90", "99")
    }


ROUTER_SEL = '{model=~"$model"}'

ROWS: list[Row] = [
    Row("Router: traffic", [
        Panel("Requests per second by route", {
            "{{route}} -> {{server}}": f"sum by (route, server) (rate(caldera_router_requests_total{ROUTER_SEL}[{RATE}]))",
        }, unit="reqps", description="Requests the router handled, split by ModelRoute and target ModelServer (the canary split is visible here)."),
        Panel("Error ratio by route", {
            "{{route}}": (
                f'sum by (route) (rate(caldera_router_requests_total{{model=~"$model", status=~"5.."}}[{RATE}]))'
                f" / sum by (route) (rate(caldera_router_requests_total{ROUTER_SEL}[{RATE}]))"
            ),
        }, unit="percentunit", description="5xx responses over all responses."),
        Panel("Requests in flight", {
            "{{instance}}": "sum by (instance) (caldera_router_active_requests)",
        }, description="Requests currently proxied by each router replica."),
        Panel("End-to-end latency", _quantiles("caldera_router_request_duration_seconds", "model", ROUTER_SEL),
              unit="s", description="From request received to last byte sent, measured by the router."),
        Panel("Time to first token (router)", _quantiles("caldera_router_ttft_seconds", "model", ROUTER_SEL),
              unit="s", description="From request received to the first upstream byte."),
        Panel("Token throughput", {
            "{{kind}}": f"sum by (kind) (rate(caldera_router_tokens_total{ROUTER_SEL}[{RATE}]))",
        }, unit="short", description="Prompt and completion tokens per second through the router."),
    ]),
    Row("Router: picking", [
        Panel("Prefix-cache hit rate (router estimate)", {
            "estimate": (
                f"sum(rate(caldera_router_prefix_match_ratio_sum[{RATE}]))"
                f" / sum(rate(caldera_router_prefix_match_ratio_count[{RATE}]))"
            ),
        }, unit="percentunit", description="Mean fraction of each prompt the router expected to be cached on the pod it picked."),
        Panel("Scheduling plugin time p99", {
            "{{plugin}}": (
                f"histogram_quantile(0.99, sum by (le, plugin) (rate(caldera_router_plugin_duration_seconds_bucket[{RATE}])))"
            ),
        }, unit="s", description="Time each filter/scorer/picker takes per request."),
        Panel("Upstream errors by pod", {
            "{{pod}} {{reason}}": f"sum by (pod, reason) (rate(caldera_router_upstream_errors_total[{RATE}]))",
        }, unit="reqps", description="Failed upstream attempts (retried or returned)."),
        Panel("P/D prefill skipped", {
            "skipped": f"sum(rate(caldera_router_pd_prefill_skipped_total[{RATE}]))",
        }, unit="reqps", description="Disaggregated requests whose uncached prompt was short enough to decode directly."),
        Panel("KV events applied and gaps", {
            "batches {{pod}}": f"sum by (pod) (rate(caldera_router_kv_event_batches_total[{RATE}]))",
            "gaps {{pod}}": f"sum by (pod) (rate(caldera_router_kv_event_gaps_total[{RATE}]))",
        }, description="KV-event batches from each engine; a gap triggers a replay."),
    ]),
    Row("Engines (per pod)", [
        Panel("Time to first token p90 by pod", {
            "{{pod}}": (
                f'histogram_quantile(0.9, sum by (le, pod) (rate(vllm:time_to_first_token_seconds_bucket{{model_name=~"$served_model"}}[{RATE}])))'
            ),
        }, unit="s", description="TTFT as each engine measures it."),
        Panel("Inter-token latency p90 by pod", {
            "{{pod}}": (
                f'histogram_quantile(0.9, sum by (le, pod) (rate(vllm:inter_token_latency_seconds_bucket{{model_name=~"$served_model"}}[{RATE}])))'
            ),
        }, unit="s"),
        Panel("Queue depth by pod", {
            "waiting {{pod}}": 'sum by (pod) (vllm:num_requests_waiting{model_name=~"$served_model"})',
            "running {{pod}}": 'sum by (pod) (vllm:num_requests_running{model_name=~"$served_model"})',
        }, description="Requests waiting for and in the engine's batch."),
        Panel("KV-cache usage by pod", {
            "{{pod}}": 'max by (pod) (vllm:kv_cache_usage_perc{model_name=~"$served_model"})',
        }, unit="percentunit"),
        Panel("Prefix-cache hit rate by pod (engine)", {
            "{{pod}}": (
                f'sum by (pod) (rate(vllm:prefix_cache_hits_total{{model_name=~"$served_model"}}[{RATE}]))'
                f' / sum by (pod) (rate(vllm:prefix_cache_queries_total{{model_name=~"$served_model"}}[{RATE}]))'
            ),
        }, unit="percentunit", description="Prompt tokens served from the engine's prefix cache: the ground truth for the router's estimate."),
        Panel("Generation throughput by pod", {
            "{{pod}}": f'sum by (pod) (rate(vllm:generation_tokens_total{{model_name=~"$served_model"}}[{RATE}]))',
        }, unit="short"),
    ]),
]

ROWS += [
    Row("Placement: plans and gaps", [
        Panel("Gangs placed and unplaceable", {
            "{{outcome}}": f"sum by (outcome) (increase(caldera_placement_gangs_total[{RATE}]))",
        }, description="Unplaceable gangs are the gaps: they wait behind the caldera.dev/placement gate (reasons in Events)."),
        Panel("Pods waiting behind the placement gate", {
            "gated": "sum(caldera_placement_gated_pods)",
        }),
        Panel("Placement rounds by plan status", {
            "{{status}}": f"sum by (status) (increase(caldera_placement_plans_total[{RATE}]))",
        }),
        Panel("Solve time", {
            "p50": f"histogram_quantile(0.5, sum by (le) (rate(caldera_placement_solve_seconds_bucket[{RATE}])))",
            "p99": f"histogram_quantile(0.99, sum by (le) (rate(caldera_placement_solve_seconds_bucket[{RATE}])))",
        }, unit="s", description="CP-SAT (warm-started by the greedy packing) per round."),
        Panel("Re-plans by cause", {
            "{{cause}}": f"sum by (cause) (increase(caldera_placement_replans_total[{RATE}]))",
        }, description="Planned pods deleted so their gang can be planned again (e.g. a node went away)."),
    ]),
    Row("Autoscaler", [
        Panel("Desired replicas by target", {
            "{{namespace}}/{{target}}": "max by (namespace, target) (caldera_autoscaler_desired_replicas)",
        }, description="What the autoscaler asks for each scaled ModelServing (or role)."),
        Panel("Scale decisions", {
            "{{owner}} {{direction}}": f"sum by (owner, direction) (increase(caldera_autoscaler_scale_decisions_total[{RATE}]))",
        }, description="Decisions that changed replicas; each also has an Event with its reason."),
        Panel("Targets refused (external autoscaler present)", {
            "{{namespace}}/{{owner}}": "max by (namespace, owner) (caldera_autoscaler_refused)",
        }, description="1 while an HPA/KEDA scales the same target: Caldera does not fight it."),
        Panel("Autoscaler tick time p99", {
            "{{kind}}": f"histogram_quantile(0.99, sum by (le, kind) (rate(caldera_autoscaler_tick_seconds_bucket[{RATE}])))",
        }, unit="s"),
    ]),
    Row("Controller: reconcile health", [
        Panel("Reconciles by result", {
            "{{result}}": f"sum by (result) (rate(caldera_modelserving_reconciles_total[{RATE}]))",
        }, unit="ops"),
        Panel("Reconcile errors", {
            "{{kind}}": f"sum by (kind) (rate(caldera_modelserving_reconcile_errors_total[{RATE}]))",
        }, unit="ops"),
        Panel("Reconcile duration", {
            "p50": f"histogram_quantile(0.5, sum by (le) (rate(caldera_modelserving_reconcile_duration_seconds_bucket[{RATE}])))",
            "p99": f"histogram_quantile(0.99, sum by (le) (rate(caldera_modelserving_reconcile_duration_seconds_bucket[{RATE}])))",
        }, unit="s"),
        Panel("Work queue and objects", {
            "queued": "sum(caldera_modelserving_queue_depth)",
            "ModelServings": "sum(caldera_modelserving_objects)",
        }),
        Panel("Writes by kind and verb", {
            "{{kind}} {{verb}}": f"sum by (kind, verb) (rate(caldera_modelserving_writes_total[{RATE}]))",
        }, unit="ops", description="At steady state this is zero: the controller only writes to converge."),
        Panel("API requests", {
            "{{verb}} {{resource}}": f"sum by (verb, resource) (rate(caldera_controller_api_requests_total[{RATE}]))",
        }, unit="reqps"),
    ]),
]

TEMPLATING = [
    {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
    {
        "name": "model", "type": "query", "label": "Route model", "includeAll": True, "multi": True,
        "allValue": ".*", "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": "label_values(caldera_router_requests_total, model)", "refId": "model"},
        "definition": "label_values(caldera_router_requests_total, model)", "refresh": 2,
    },
    {
        "name": "served_model", "type": "query", "label": "Served model", "includeAll": True, "multi": True,
        "allValue": ".*", "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": "label_values(vllm:num_requests_waiting, model_name)", "refId": "served_model"},
        "definition": "label_values(vllm:num_requests_waiting, model_name)", "refresh": 2,
    },
]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
            for i, (legend, expr) in enumerate(panel.exprs.items())
        ],
    }


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id = 1
    y = 0
    for row in ROWS:
        panels.append({"id": next_id, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x = 0
                y += 8
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
        y += 8
    return {
        "title": "Caldera",
        "uid": "caldera-overview",
        "description": "Caldera router, engines, placement, autoscaler and controller (deploy/dashboards/build.py).",
        "tags": ["caldera", "llm", "inference"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": TEMPLATING},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python deploy/dashboards/build.py")
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
