"""Gateway-mode routing cost per request (pure matching, no I/O); prints JSON.

    .venv/bin/python benchmarks/router_gateway.py [--routes 20] [--n 200000]

Compares plain ModelRoute matching with Gateway-mode decisions: a ModelRoute attached to the
Gateway listener on the main port, and a request on another listener that falls through to
an HTTPRoute -> InferencePool (the route table has `--routes` ModelRoutes and HTTPRoutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path
from typing import Any

# Run as a script, this folder leads sys.path and benchmarks/router.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from multidict import CIMultiDict  # noqa: E402

from router.gateway.matching import GatewayRouter, RequestFacts  # noqa: E402
from router.gateway.table import GatewayTable  # noqa: E402
from router.routing import RouteTable, compile_route, compile_server, match  # noqa: E402

MAIN = 8080


def _gateway(name: str, port: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "gw"},
            "spec": {"gatewayClassName": "kthena-router",
                     "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


def _model_route(name: str, model: str, parent: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"modelName": model, "rules": [{"targetModels": [{"modelServerName": "s"}]}]}
    if parent:
        spec["parentRefs"] = [{"name": parent, "namespace": "gw"}]
    return {"metadata": {"name": name, "namespace": "apps", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec}


def _http_route(name: str, prefix: str, parent: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "apps", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [{"name": parent, "namespace": "gw"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                                "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                                 "name": "p"}]}]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", type=int, default=20)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    routes = [_model_route(f"r{i}", f"m{i}", "default") for i in range(args.routes)]
    routes.append(_model_route("plain", "plain", None))
    http_routes = [_http_route(f"h{i}", f"/p{i}", "edge") for i in range(args.routes)]
    http_routes.append(_http_route("all", "/", "edge"))
    pools = [{"metadata": {"name": "p", "namespace": "apps"},
              "spec": {"selector": {"matchLabels": {"app": "p"}}, "targetPorts": [{"number": 8000}]}}]
    server = {"metadata": {"name": "s", "namespace": "apps"},
              "spec": {"model": "m", "workloadSelector": {"matchLabels": {"app": "s"}}}}
    gw = GatewayTable.build([_gateway("default", MAIN), _gateway("edge", 8081)], http_routes, pools, routes,
                            inference_extension=True)
    compiled = [compile_route(r) for r in routes]
    base = RouteTable.build(compiled, [compile_server(server), *gw.pools.values()])
    router = GatewayRouter(gw, [r for r in compiled if r.has_parent_refs], MAIN)
    headers: CIMultiDict[str] = CIMultiDict()

    def facts(port: int) -> RequestFacts:
        return RequestFacts.of(port, "router.local", "/v1/completions", "POST", headers, {})

    main_facts, edge_facts = facts(MAIN), facts(8081)
    n = args.n
    result = {
        "routes": args.routes, "n": n,
        "plain_modelroute_match_us": timeit.timeit(
            lambda: match(base, "plain", "/v1/completions", headers), number=n) / n * 1e6,
        "gateway_modelroute_us": timeit.timeit(lambda: router.decide(base, main_facts, "m7"), number=n) / n * 1e6,
        "gateway_httproute_to_pool_us": timeit.timeit(
            lambda: router.decide(base, edge_facts, "any-model"), number=n) / n * 1e6,
        "request_facts_us": timeit.timeit(lambda: facts(8081), number=n) / n * 1e6,
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
