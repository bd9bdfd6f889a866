"""The Grafana dashboard and the Prometheus alerts: every query parses with Prometheus's own
parser (promtool) and names only metrics the components really export."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "dashboards" / "caldera.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    queries = [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label) is Grafana's, not PromQL: check its metric as a selector.
            metric = variable["definition"].removeprefix("label_values(").split(",")[0]
            queries.append((f"variable {variable['name']}", metric))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def promtool_check(promtool: Path, exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": expr} for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, check=False)


def test_dashboard_json_is_what_build_py_generates() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "dashboards" / "build.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_parses_with_promtool(
        promtool: Path, to_promql: Callable[[str], str], tmp_path: Path) -> None:
    exprs = [to_promql(expr) for _, expr in dashboard_queries()]
    result = promtool_check(promtool, exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_every_dashboard_query_names_only_exported_metrics(
        exported_metric_names: set[str], metric_names_of: Callable[[str], set[str]],
        to_promql: Callable[[str], str]) -> None:
    unknown = {
        title: sorted(metric_names_of(to_promql(expr)) - exported_metric_names)
        for title, expr in dashboard_queries()
        if metric_names_of(to_promql(expr)) - exported_metric_names
    }
    assert not unknown, f"dashboard panels query metrics no component exports: {unknown}"


def test_every_dashboard_query_names_a_metric(
        metric_names_of: Callable[[str], set[str]], to_promql: Callable[[str], str]) -> None:
    empty = [title for title, expr in dashboard_queries() if not metric_names_of(to_promql(expr))]
    assert not empty


@pytest.mark.parametrize("section", ["Router", "Engines", "Placement", "Autoscaler", "Controller"])
def test_dashboard_has_a_row_for(section: str) -> None:
    rows = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "row"]
    assert any(row.startswith(section) for row in rows), rows


def test_alert_rules_pass_promtool_check(promtool: Path) -> None:
    result = subprocess.run([str(promtool), "check", "rules", str(ALERTS)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_names_only_exported_metrics(
        exported_metric_names: set[str], metric_names_of: Callable[[str], set[str]]) -> None:
    unknown = {rule["alert"]: sorted(metric_names_of(rule["expr"]) - exported_metric_names)
               for rule in alert_rules() if metric_names_of(rule["expr"]) - exported_metric_names}
    assert not unknown, f"alerts on metrics no component exports: {unknown}"


def test_every_alert_has_severity_summary_and_description() -> None:
    incomplete = [rule["alert"] for rule in alert_rules()
                  if rule.get("labels", {}).get("severity") not in {"critical", "warning", "info"}
                  or not rule.get("annotations", {}).get("summary")
                  or not rule.get("annotations", {}).get("description")]
    assert not incomplete


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (le, pod) (rate(vllm:time_to_first_token_seconds_bucket{model_name=~"a|b"}[5m]))',
     {"vllm:time_to_first_token_seconds_bucket"}),
    ("sum(rate(a_total[5m])) / on (x) group_left (y) sum(rate(b_total[1m] offset 1h)) > 1e-3",
     {"a_total", "b_total"}),
    ("histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m]))) > bool 2", {"x_bucket"}),
])
def test_metric_name_extraction_finds_every_selector(
        expr: str, names: set[str], metric_names_of: Callable[[str], set[str]]) -> None:
    assert metric_names_of(expr) == names


def test_metric_name_extraction_sees_an_unknown_metric(
        exported_metric_names: set[str], metric_names_of: Callable[[str], set[str]]) -> None:
    assert metric_names_of("rate(caldera_router_no_such_metric_total[5m])") - exported_metric_names
