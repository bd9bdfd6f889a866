"""Gateway mode wired into a running router: the compiled tables, the request hook, listeners.

`GatewayMode.update` is called with the raw objects on every rebuild (cluster discovery or
static config); it compiles them, swaps the tables in one assignment and reconciles the
listener ports. `GatewayMode.route` is the router's `route_hook`: it reads the local port,
Host, path, method, headers and query of the request and returns the routing decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from router.api import ModelRoute
from router.gateway.filters import HeaderEdit, UpstreamEdit, redirect_location
from router.gateway.listeners import ListenerManager
from router.gateway.matching import (
    GatewayDecision,
    GatewayRouter,
    RedirectRequest,
    RequestFacts,
    match_http_route,
)
from router.gateway.objects import normalize_host
from router.gateway.settings import GatewaySettings
from router.gateway.table import GatewayTable
from router.request import ParsedRequest
from router.routing import ProviderDecision, Route, RouteConfigError, RouteDecision, Server, compile_route

if TYPE_CHECKING:
    from router.server import Router

log = logging.getLogger(__name__)

# Request keys: the matched rule's filters, read when the upstream request and the response are made.
UPSTREAM_EDIT = web.RequestKey("caldera.gateway.upstream", UpstreamEdit)
RESPONSE_EDIT = web.RequestKey("caldera.gateway.response_headers", HeaderEdit)


class GatewayMode:
    def __init__(self, router: Router, settings: GatewaySettings) -> None:
        self.router = router
        self.settings = settings
        cfg = router.config
        self.listeners = ListenerManager(cfg.host, cfg.port)
        self.table = GatewayTable(class_names=tuple(settings.class_names),
                                  inference_extension=settings.enable_inference_extension)
        self.matcher = GatewayRouter(self.table, [], cfg.port)
        self.raw: dict[str, list[Mapping[str, Any]]] = {"gateways": [], "httproutes": [], "inferencepools": []}
        self.absent_kinds: set[str] = set()  # CRDs not installed in the cluster
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_listeners_changed: Callable[[], None] | None = None  # e.g. StatusWriter.submit
        router.route_hook = self.route
        router.models_hook = self.model_names
        router.upstream_hook = self.edit_upstream
        router.app.on_response_prepare.append(self._edit_response)
        router.app.middlewares.append(self._redirect_other_paths)

    # ---- configuration ---------------------------------------------------------------------

    def update(self, model_routes: Iterable[Mapping[str, Any]], gateways: Iterable[Mapping[str, Any]],
               http_routes: Iterable[Mapping[str, Any]], pools: Iterable[Mapping[str, Any]],
               secrets: Iterable[Mapping[str, Any]] | None = (), services: Iterable[Mapping[str, Any]] | None = (),
               endpoint_slices: Iterable[Mapping[str, Any]] | None = ()) -> list[Server]:
        """Compile the Gateway objects; return the InferencePool and Service backend servers for
        `RouterState.update` (the Services' endpoint records are `self.table.services.pods`).
        `secrets`: the TLS Secrets HTTPS listeners reference; `services`, `endpoint_slices`: for
        Service backendRefs (None: not read)."""
        routes, gws, hrs, ips = list(model_routes), list(gateways), list(http_routes), list(pools)
        s = self.settings
        table = GatewayTable.build(gws, hrs, ips, routes, class_names=s.class_names,
                                   inference_extension=s.enable_inference_extension,
                                   enforce_allowed_routes=s.enforce_allowed_routes,
                                   secrets=None if secrets is None else list(secrets),
                                   main_port=self.router.config.port,
                                   services=None if services is None else list(services),
                                   endpoint_slices=None if endpoint_slices is None else list(endpoint_slices))
        attached: list[Route] = []
        for obj in routes:
            if not (obj.get("spec") or {}).get("parentRefs"):
                continue
            try:
                ModelRoute.model_validate(obj)
                attached.append(compile_route(obj))
            except (RouteConfigError, ValueError) as exc:
                table.errors.append(str(exc))
        for error in table.errors:
            log.warning("ignoring invalid Gateway API object", extra={"reason": error})
        for lid, problem in table.problems.items():
            if self.table.problems.get(lid) != problem:  # logged when it appears or changes, not per rebuild
                log.error(f"Gateway listener {lid} is not served: {problem.message}",
                          extra={"listener": lid, "reason": problem.reason})
        for lid in self.table.problems.keys() - table.problems.keys():
            if any(x.id == lid for ls in table.by_port.values() for x in ls):
                log.info(f"Gateway listener {lid} is served again", extra={"listener": lid})
        self.raw = {"gateways": gws, "httproutes": hrs, "inferencepools": ips}
        self.table = table
        self.matcher = GatewayRouter(table, attached, self.router.config.port)
        self._reconcile_listeners()
        return [*table.pools.values(), *table.services.servers.values()]

    def load_static(self) -> None:
        """Static mode: the Gateway objects come from the config file."""
        cfg, s = self.router.config, self.settings
        pools = self.update(cfg.model_routes, s.gateways, s.http_routes, s.inference_pools, s.secrets, s.services,
                            s.endpoint_slices)
        self.router.load_static(pools=pools, extra_pods=self.table.services.pods)

    def _reconcile_listeners(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving yet: bind() opens the ports
        task = loop.create_task(self._reconcile())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile(self) -> None:
        await self.listeners.reconcile(self.table.port_tls())
        if self.on_listeners_changed is not None:
            self.on_listeners_changed()

    async def bind(self, runner: web.AppRunner) -> None:
        await self.listeners.reconcile(self.table.port_tls())
        await self.listeners.bind(runner)
        if self.on_listeners_changed is not None:
            self.on_listeners_changed()

    def status_snapshot(self) -> tuple[GatewayTable, dict[str, list[Any]], dict[int, str], set[int]]:
        """What the status writer reads: table, raw objects, bind errors, serving ports."""
        lm = self.listeners
        return self.table, dict(self.raw), dict(lm.errors), lm.open_ports() | {self.router.config.port}

    async def settle(self) -> None:
        """Wait for listener changes already scheduled (ports opened or closed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.listeners.close()

    # ---- requests --------------------------------------------------------------------------

    def model_names(self, request: web.Request) -> list[str]:
        return self.matcher.model_names(self.router.state.table, _local_port(request), request.host)

    def route(self, request: web.Request, parsed: ParsedRequest) -> RouteDecision | ProviderDecision:
        facts = RequestFacts.of(_local_port(request), request.host, request.path, request.method, request.headers,
                                request.query, request.scheme, request.query_string)
        router = self.router
        try:
            decision = self.matcher.decide(router.state.table, facts, parsed.model,
                                           router._split_key(request, parsed), router.rng)
        except RedirectRequest as redirect:
            raise (web.HTTPMovedPermanently if redirect.status == 301 else web.HTTPFound)(redirect.location) from None
        if isinstance(decision, GatewayDecision):
            if decision.upstream is not None:
                request[UPSTREAM_EDIT] = decision.upstream
            if decision.response_headers is not None:
                request[RESPONSE_EDIT] = decision.response_headers
        return decision

    def edit_upstream(self, request: web.Request, headers: dict[str, str]) -> str:
        """The router's upstream hook: a matched rule's RequestHeaderModifier and URLRewrite."""
        edit = request.get(UPSTREAM_EDIT)
        if edit is None:
            return request.path
        if edit.headers is not None:
            edit.headers.apply(headers, request.headers)
        if edit.host is not None:
            headers["host"] = edit.host
        return edit.path if edit.path is not None else request.path

    @web.middleware
    async def _redirect_other_paths(self, request: web.Request,
                                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                    ) -> web.StreamResponse:
        """RequestRedirect rules also answer paths the router does not serve (e.g. an HTTP to
        HTTPS redirect of a whole host), which would otherwise be 404 or 405."""
        if getattr(request.match_info, "http_exception", None) is None or not self.table.inference_extension:
            return await handler(request)
        port = _local_port(request)
        listener = self.table.listener_for(port, normalize_host(request.host)) if port is not None else None
        if listener is not None:
            facts = RequestFacts.of(port, request.host, request.path, request.method, request.headers, request.query,
                                    request.scheme, request.query_string)
            hit = match_http_route(self.table, listener, facts)
            redirect = hit[1].filters.redirect if hit is not None else None
            if hit is not None and redirect is not None:
                prefix = hit[2].path.value if hit[2].path.type == "PathPrefix" else None
                location = redirect_location(redirect, facts.scheme, facts.host, port, facts.path,
                                             facts.query_string, prefix)
                raise (web.HTTPMovedPermanently if redirect.status == 301 else web.HTTPFound)(location)
        return await handler(request)

    async def _edit_response(self, request: web.Request, response: web.StreamResponse) -> None:
        """ResponseHeaderModifier, on every response of a matched rule (before its headers are sent)."""
        edit = request.get(RESPONSE_EDIT)
        if edit is None:
            return
        for name in edit.remove:
            response.headers.popall(name, None)
        for name, value in edit.set:
            response.headers[name] = value
        for name, value in edit.add:
            response.headers.add(name, value)


def _local_port(request: web.Request) -> int | None:
    """The port the request arrived on: which listener it belongs to."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None
