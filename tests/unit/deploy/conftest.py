"""Fixtures for the deploy tests: real helm (built from its Go module once and cached), real
promtool (Debian's prometheus package), and the metric names the components export."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from caldera import helm
from caldera.localcluster import prometheus

ROOT = Path(__file__).resolve().parents[3]

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    # A Go build failure raises HelmBuildError: a test failure, never a skip.
    return helm.ensure_helm()


@pytest.fixture(scope="session")
def render(helm_binary: Path) -> Render:
    """`helm template` of the chart with the given values, parsed into objects."""

    def _render(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        return helm.template(values, **kwargs)

    return _render


@pytest.fixture(scope="session")
def default_objects(render: Render) -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="session")
def promtool() -> Path:
    prometheus.ensure_installed()
    path = Path(prometheus.binary()).with_name("promtool")
    assert path.is_file(), f"{path}: Debian's prometheus package ships promtool next to prometheus"
    return path


def _family_names(exposition: str) -> set[str]:
    """Every sample name a Prometheus text exposition can contain, from its TYPE lines."""
    names: set[str] = set()
    for match in re.finditer(r"^# TYPE (\S+) (\w+)$", exposition, re.MULTILINE):
        name, kind = match.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {f"{name}_sum", f"{name}_count"}
    return names


@pytest.fixture(scope="session")
def exported_metric_names() -> set[str]:
    """The metric names Caldera's components really export, read from their registries."""
    import importlib
    import importlib.util

    from prometheus_client import REGISTRY

    from enginesim.clock import Clock
    from enginesim.engine import Engine
    from enginesim.latency import get_profile
    from enginesim.metrics import EngineMetrics
    from enginesim.tokenizer import get_tokenizer
    from router.metrics import RouterMetrics

    names = _family_names(RouterMetrics().render().decode())
    # The controller's modules register their metrics in the default registry on import.
    for module in ("modelserving.metrics", "autoscaler.controller", "placement.controller"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    names |= _family_names(generate_latest(REGISTRY).decode())
    for mode in ("vllm", "sglang"):
        engine = Engine(get_profile("8b-h100"), get_tokenizer("whitespace"), Clock())
        names |= _family_names(generate_latest(EngineMetrics(engine, "model", mode).registry).decode())
    return names


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a (syntactically valid, promtool-checked) PromQL expression selects.

    Drops string literals, label matchers, ranges and grouping clauses, then keeps every
    identifier that is not a function call or a keyword.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.groups()
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


@pytest.fixture(scope="session")
def metric_names_of() -> Callable[[str], set[str]]:
    return promql_metric_names


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced so Prometheus can parse it."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


@pytest.fixture(scope="session")
def to_promql() -> Callable[[str], str]:
    return grafana_to_promql
