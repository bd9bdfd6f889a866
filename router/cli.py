"""`caldera router`: run the router from a static YAML file or against a cluster."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from aiohttp import web

from router import debug
from router.config import RouterConfig, load_config
from router.server import Router, tune_gc_for_serving

log = logging.getLogger("caldera.router")


async def serve(config: RouterConfig, kubeconfig: str | None = None, cluster: bool = False,
                namespace: str | None = None) -> None:
    router = Router(config)
    gateway = None
    if config.gateway.enabled:
        from router.gateway.mode import GatewayMode

        gateway = GatewayMode(router, config.gateway)
    if cluster:
        from router.discovery import Discovery

        if gateway is not None:
            from router.gateway.discovery import GatewayDiscovery

            discovery: Discovery = GatewayDiscovery(router.state, gateway, kubeconfig=kubeconfig,
                                                    namespace=namespace,
                                                    on_synced=lambda: setattr(router, "ready", True))
        else:
            discovery = Discovery(router.state, kubeconfig=kubeconfig, namespace=namespace,
                                  on_synced=lambda: setattr(router, "ready", True))
        discovery.watch_providers = config.providers.enabled  # ExternalModelProviders and their Secrets
        router.app.on_startup.append(lambda app: discovery.start())
        router.app.on_cleanup.append(lambda app: discovery.stop())
        source = debug.discovery_source(discovery)
    else:
        if gateway is not None:
            gateway.load_static()
        else:
            router.load_static()
        source = debug.static_source(router)
    debug.ConfigDump(router, source, gateway).install(router.app)
    # Signals drain (router.resilience.drain); a client that goes away cancels its handler,
    # which closes the upstream connection so the engine aborts the request.
    runner = web.AppRunner(router.app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=4096, reuse_address=True)
    await site.start()
    tune_gc_for_serving()
    if gateway is not None:
        await gateway.bind(runner)  # one more server per Gateway listener port
    log.info("router listening", extra={"host": config.host, "port": config.port, "profile": config.profile,
                                        "mode": "cluster" if cluster else "static"})
    print(f"caldera router listening on http://{config.host}:{config.port}", file=sys.stderr, flush=True)
    try:
        await router.guard.drain.run_until_signalled(on_signal=router.guard.begin_drain)
    finally:
        if gateway is not None:
            await gateway.close()
        await runner.cleanup()


@click.command("router")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Router YAML: profiles, limits and, in static mode, modelRoutes/modelServers/endpoints.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False),
              help="Cluster mode: watch ModelRoute, ModelServer and Pods with this kubeconfig.")
@click.option("--in-cluster", is_flag=True, help="Cluster mode with the in-cluster service account.")
@click.option("--namespace", default=None, help="Watch one namespace only (default: all).")
@click.option("--host", default=None, help="Listen address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default 8080).")
@click.option("--profile", default=None,
              help="Scheduling profile: default, random, round-robin, least-request, prefix, precise, dynamo, "
                   "or one defined in the config.")
@click.option("--metrics-interval", type=float, default=None, help="Engine metrics scrape interval, seconds.")
@click.option("--tokenizer", default=None, help="Tokenizer for the precise KV index, e.g. enginesim:whitespace.")
@click.option("--no-kv-events", is_flag=True, help="Do not subscribe to engines' KV events.")
@click.option("--no-access-log", is_flag=True, help="Disable the JSON access log.")
@click.option("--seed", type=int, default=None, help="Random seed for pickers and canary splits.")
@click.option("--enable-gateway-api", is_flag=True,
              help="Gateway API mode: watch Gateways; ModelRoutes with parentRefs serve on their listeners.")
@click.option("--enable-gateway-api-inference-extension", is_flag=True,
              help="Also watch HTTPRoutes and InferencePools (implies --enable-gateway-api).")
def router_command(config_path: str | None, kubeconfig: str | None, in_cluster: bool, namespace: str | None,
                   host: str | None, port: int | None, profile: str | None, metrics_interval: float | None,
                   tokenizer: str | None, no_kv_events: bool, no_access_log: bool, seed: int | None,
                   enable_gateway_api: bool, enable_gateway_api_inference_extension: bool) -> None:
    """Run the OpenAI-compatible, KV-cache-aware router."""
    overrides: dict[str, Any] = {"host": host, "port": port, "profile": profile,
                                 "metricsInterval": metrics_interval, "tokenizer": tokenizer, "seed": seed}
    if no_kv_events:
        overrides["kvEvents"] = False
    if no_access_log:
        overrides["accessLog"] = False
    try:
        config = load_config(config_path, overrides)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if enable_gateway_api or enable_gateway_api_inference_extension:
        config.gateway = config.gateway.model_validate({
            **config.gateway.model_dump(by_alias=True),
            "enableGatewayAPI": enable_gateway_api or config.gateway.enable_gateway_api,
            "enableGatewayAPIInferenceExtension": enable_gateway_api_inference_extension
            or config.gateway.enable_inference_extension})
    cluster = bool(kubeconfig or in_cluster)
    if not cluster and config_path is None:
        raise click.UsageError("give --config FILE (static mode) or --kubeconfig/--in-cluster (cluster mode)")
    log.debug("router configuration", extra={"config": config.model_dump(by_alias=True)})
    _raise_open_file_limit()
    import uvloop

    uvloop.run(serve(config, kubeconfig, cluster, namespace))


def _raise_open_file_limit() -> None:
    """A proxy holds two sockets per stream: lift the soft descriptor limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
