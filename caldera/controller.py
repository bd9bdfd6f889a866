"""`caldera controller`: one kopf operator for ModelServing, placement, autoscaling and admission.

The ModelServing handlers always run; `placement.controller`, `autoscaler.controller` and
`webhooks.handlers` join when those modules exist (importing them registers their kopf
handlers). Replicas elect a leader with kopf peering; a readiness endpoint and Prometheus
metrics are served on --metrics-port, kopf's liveness probe on --health-port; admission
webhooks are served over TLS with a certificate generated at start, and kopf keeps the
Validating/MutatingWebhookConfiguration (with that caBundle) up to date. SIGTERM/SIGINT
stop the operator gracefully (daemons are cancelled, webhooks deregistered).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import importlib.util
import ipaddress
import logging
import os
import random
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import kopf
from aiohttp import web
from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation
from kubernetes.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from caldera.kube import api_client
from modelserving.executor import Kube

log = logging.getLogger("caldera.controller")

OPTIONAL_MODULES = ("placement.controller", "autoscaler.controller", "webhooks.handlers")
WEBHOOK_CONFIGURATION = "caldera.volcano.sh"
PEERING_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Cluster",
        "names": {"plural": "clusterkopfpeerings", "singular": "clusterkopfpeering", "kind": "ClusterKopfPeering"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def default_placement() -> str:
    """Caldera's own placement once its controller exists; Volcano alone before that."""
    return "caldera" if module_exists("placement.controller") else "volcano"


def import_handlers(webhooks: bool = True) -> list[str]:
    """Import every handler module that exists; an existing module that fails to import is an error.

    Without webhooks the admission handlers are not imported: kopf refuses to run admission
    handlers without a server.
    """
    loaded = ["modelserving.controller"]
    importlib.import_module("modelserving.controller")
    for name in OPTIONAL_MODULES:
        if name == "webhooks.handlers" and not webhooks:
            continue
        if module_exists(name):
            importlib.import_module(name)
            loaded.append(name)
    return loaded


# -- TLS for the admission webhooks ----------------------------------------------------------------
@dataclass(frozen=True)
class WebhookTLS:
    certfile: Path
    keyfile: Path
    cafile: Path


def generate_webhook_tls(directory: Path, hosts: list[str]) -> WebhookTLS:
    """A throw-away CA and a server certificate for `hosts` (IPs or DNS names), valid for a year."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "caldera-webhook-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    tls = WebhookTLS(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
    tls.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    tls.cafile.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    os.chmod(tls.keyfile, 0o600)
    return tls


def has_admission_handlers() -> bool:
    registry = kopf.get_default_registry()
    webhooks = getattr(registry, "_webhooks", None)
    return bool(webhooks is not None and webhooks.get_all_handlers())


class _KopfNoise(logging.Filter):
    """kopf logs every handled watch event at INFO and attaches its whole settings object."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("settings", None)
        return not (record.levelno <= logging.INFO and str(record.msg).startswith("Handler '")
                    and str(record.msg).endswith("succeeded."))


def quiet_kopf() -> None:
    noise = _KopfNoise()
    for handler in logging.getLogger().handlers:
        handler.addFilter(noise)


# -- namespace patterns ------------------------------------------------------------------------------
_kopf_namespace_event = observation.process_discovered_namespace_event


async def _namespace_event(*, raw_event: bodies.RawEvent, namespaces: Collection[references.NamespacePattern],
                           insights: references.Insights, **kwargs: Any) -> None:
    if raw_event["type"] is not None:
        await _kopf_namespace_event(raw_event=raw_event, namespaces=namespaces, insights=insights, **kwargs)
        return
    name = raw_event["object"]["metadata"]["name"]
    async with insights.revised:
        served = name in insights.namespaces
        observation.revise_namespaces(raw_events=[raw_event], insights=insights, namespaces=namespaces)
        if (name in insights.namespaces) != served:
            log.info(f"namespace {name}: found by the namespace watch's own listing, "
                     f"{'now served' if not served else 'no longer served'}")
            insights.revised.notify_all()


def serve_namespaces_listed_by_the_watch() -> None:
    """Let kopf's namespace watch add the namespaces its own listing finds.

    With namespace patterns, kopf's namespace observer (kopf/_core/reactor/observation.py,
    `namespace_observer`) lists the namespaces, then starts a watch that lists them again
    (kopf/_cogs/clients/watching.py, `continuous_watch`) and drops that second listing
    (`process_discovered_namespace_event` returns on events of type None). A matching namespace
    created between the two listings (just after start-up, when /readyz already says ready) or
    while the watch reconnects was never served: none of its objects were watched or reconciled.
    kopf looks the processor up in its module when the observer starts, so this must run before.
    """
    observation.process_discovered_namespace_event = _namespace_event


# -- peering, health, metrics -----------------------------------------------------------------------
def _ensure(kube: Kube, collection: str, body: dict[str, Any], resource: str) -> None:
    try:
        kube.request("get", f"{collection}/{body['metadata']['name']}", resource=resource)
    except ApiException as exc:
        if exc.status != 404:
            raise
        try:
            kube.request("create", collection, body=body, resource=resource)
        except ApiException as create_exc:
            if create_exc.status != 409:
                raise


def ensure_peering(kube: Kube, name: str) -> None:
    """kopf needs the ClusterKopfPeering CRD and an object of the peering's name to elect a leader.

    Without them kopf would wait forever, silently; so a missing permission is an error that says so.
    """
    try:
        _ensure_peering(kube, name)
    except ApiException as exc:
        if exc.status == 403:
            raise click.ClickException(
                f"--peering {name}: cannot create the ClusterKopfPeering CRD or object {name!r} ({exc.reason}); "
                "create them (deploy/ does) or grant create on customresourcedefinitions and clusterkopfpeerings, "
                "or run a single replica with --peering ''") from exc
        raise


def _ensure_peering(kube: Kube, name: str) -> None:
    _ensure(kube, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", PEERING_CRD, "customresourcedefinitions")
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    collection = "/apis/kopf.dev/v1/clusterkopfpeerings"
    deadline = time.monotonic() + 30
    while True:  # the CRD may take a moment to be served
        try:
            _ensure(kube, collection, body, "clusterkopfpeerings")
            return
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Options:
    placement: str
    metrics_host: str
    metrics_port: int
    health_port: int
    webhook_host: str
    webhook_port: int
    webhooks: bool
    peering: str | None
    priority: int
    peering_lifetime: int
    namespaces: tuple[str, ...]
    resync_seconds: float
    tls_dir: Path | None
    webhook_cert_dir: Path | None = None
    leader_worker_set: bool = True


async def serve_metrics(host: str, port: int, ready: asyncio.Event) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def readyz(_: web.Request) -> web.Response:
        from modelserving.controller import STATE

        ok = ready.is_set() and STATE.ready
        return web.Response(status=200 if ok else 503, text="ok" if ok else "starting")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_operator(opts: Options, kubeconfig: str | None) -> None:
    from modelserving import controller as msc

    quiet_kopf()
    api = api_client(kubeconfig)
    kube = Kube(api)
    msc.configure(msc.Settings(placement=opts.placement, resync_seconds=opts.resync_seconds), kube)
    if opts.leader_worker_set:
        msc.serve_leaderworkersets()
    loaded = import_handlers(opts.webhooks)
    log.info("handlers loaded", extra={"modules": loaded, "placement": opts.placement})

    standalone = opts.peering is None
    if not standalone:
        await asyncio.to_thread(ensure_peering, kube, opts.peering or "caldera")

    tls: WebhookTLS | None = None
    managed = False
    if opts.webhooks and has_admission_handlers():
        if opts.webhook_cert_dir is not None:
            # A certificate made by someone else (Helm, cert-manager): they also own the configurations.
            tls = WebhookTLS(opts.webhook_cert_dir / "tls.crt", opts.webhook_cert_dir / "tls.key",
                             opts.webhook_cert_dir / "ca.crt")
            for path in (tls.certfile, tls.keyfile):
                if not path.is_file():
                    raise click.UsageError(f"--webhook-cert-dir: {path} is missing (expected tls.crt and tls.key)")
        else:
            directory = opts.tls_dir or Path(tempfile.mkdtemp(prefix="caldera-webhook-"))
            tls = generate_webhook_tls(directory, [opts.webhook_host, "localhost"])
            managed = True

    @kopf.on.startup()
    def _settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.batching.worker_limit = 64
        if not standalone and opts.peering:
            settings.peering.name = opts.peering
            settings.peering.clusterwide = True
            settings.peering.mandatory = True
            settings.peering.priority = opts.priority
            settings.peering.lifetime = opts.peering_lifetime
        if tls is not None:
            settings.admission.server = kopf.WebhookServer(
                addr=opts.webhook_host, port=opts.webhook_port, host=opts.webhook_host,
                certfile=str(tls.certfile), pkeyfile=str(tls.keyfile),
                cafile=str(tls.cafile) if tls.cafile.is_file() else None)
            if managed:
                settings.admission.managed = WEBHOOK_CONFIGURATION

    if opts.namespaces:
        serve_namespaces_listed_by_the_watch()
    ready = asyncio.Event()
    runner = await serve_metrics(opts.metrics_host, opts.metrics_port, ready)
    try:
        await kopf.operator(
            clusterwide=not opts.namespaces,
            namespaces=opts.namespaces,
            standalone=standalone,
            peering_name=opts.peering if not standalone else None,
            priority=opts.priority,
            liveness_endpoint=f"http://{opts.metrics_host}:{opts.health_port}/healthz" if opts.health_port else None,
            ready_flag=ready,
        )
    finally:
        await runner.cleanup()
        api.close()


@click.command("controller")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), envvar="KUBECONFIG", default=None)
@click.option("--placement", type=click.Choice(["caldera", "volcano"]), default=None,
              help="Who places gangs: Caldera's placement controller (pods are gated) or Volcano alone. "
                   "Default: caldera when the placement controller is installed, else volcano.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-port", type=int, default=8080, show_default=True, help="/metrics and /readyz.")
@click.option("--health-port", type=int, default=8081, show_default=True, help="kopf liveness (/healthz); 0: off.")
@click.option("--webhook-host", default="127.0.0.1", show_default=True,
              help="Address the API server uses to reach the admission webhooks (and the certificate's SAN).")
@click.option("--webhook-port", type=int, default=9443, show_default=True)
@click.option("--webhooks/--no-webhooks", default=True, show_default=True)
@click.option("--peering", default="caldera", show_default=True,
              help="kopf peering name for leader election between replicas; '' runs standalone.")
@click.option("--priority", type=int, default=None,
              help="Peering priority; the live replica with the highest one leads, the others stand by. "
                   "Default: random, so replicas never tie (kopf pauses every replica of a tied priority).")
@click.option("--peering-lifetime", type=int, default=60, show_default=True,
              help="Seconds after which a silent (killed) leader is considered dead and a standby takes over.")
@click.option("--namespace", "namespaces", multiple=True, help="Watch only these namespaces (default: all).")
@click.option("--resync-seconds", type=float, default=300.0, show_default=True)
@click.option("--tls-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the generated webhook certificate (default: a temporary directory).")
@click.option("--webhook-cert-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Serve admission with tls.crt/tls.key (and ca.crt) from this directory, e.g. a mounted "
                   "Secret, instead of generating a certificate; the webhook configurations are then "
                   "left to whoever made the certificate (Helm, cert-manager).")
@click.option("--leader-worker-set/--no-leader-worker-set", "leader_worker_set", default=True, show_default=True,
              help="Serve LeaderWorkerSets as one-role ModelServings when their CRD is installed; off: never "
                   "watch them (no grant needed).")
def controller_command(kubeconfig: str | None, placement: str | None, metrics_host: str, metrics_port: int,
                       health_port: int, webhook_host: str, webhook_port: int, webhooks: bool, peering: str,
                       priority: int | None, peering_lifetime: int, namespaces: tuple[str, ...], resync_seconds: float,
                       tls_dir: Path | None, webhook_cert_dir: Path | None, leader_worker_set: bool) -> None:
    """Run the Caldera controller (ModelServing, placement, autoscaler, admission webhooks)."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = str(kubeconfig)  # kopf's own login reads it too
    opts = Options(
        placement=placement or default_placement(), metrics_host=metrics_host, metrics_port=metrics_port,
        health_port=health_port, webhook_host=webhook_host, webhook_port=webhook_port, webhooks=webhooks,
        peering=peering or None, priority=priority if priority is not None else random.randint(1, 2**31 - 1),
        peering_lifetime=peering_lifetime, namespaces=namespaces, resync_seconds=resync_seconds,
        tls_dir=tls_dir, webhook_cert_dir=webhook_cert_dir, leader_worker_set=leader_worker_set,
    )
    log.debug("controller options", extra={"options": opts})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        log.debug("uvloop not installed; using the default event loop")
    asyncio.run(run_operator(opts, kubeconfig))
