"""Test and benchmark helpers for Gateway mode: a real echo backend, a router in static
Gateway mode (its main port and Gateway listeners served on loopback), self-signed
certificates and the kubernetes.io/tls Secrets holding them."""

from __future__ import annotations

import base64
import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from router.config import RouterConfig
from router.debug import ConfigDump, static_source
from router.gateway.mode import GatewayMode
from router.harness import free_port
from router.server import Router


@asynccontextmanager
async def echo_server(name: str = "echo") -> AsyncIterator[str]:
    """An HTTP server answering every POST with what it received (path, headers) and its name,
    as an OpenAI-like JSON body; yields its address (127.0.0.1:port)."""
    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"object": "text_completion", "model": "echo", "server": name,
                                  "path": request.path_qs,
                                  "headers": {k.lower(): v for k, v in request.headers.items()}})

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def static_gateway_router(cfg: dict[str, Any], *, config_dump: bool = False
                                ) -> AsyncIterator[tuple[Router, GatewayMode]]:
    """A router configured by `cfg` (RouterConfig fields, with a `gateway` section) in static mode;
    `config_dump` also serves `/debug/config_dump/...`."""
    config = RouterConfig.model_validate({"port": free_port(), "metricsInterval": 0.05, "kvEvents": False, **cfg})
    router = Router(config)
    mode = GatewayMode(router, config.gateway)
    mode.load_static()
    if config_dump:
        ConfigDump(router, static_source(router), mode).install(router.app)
    runner = web.AppRunner(router.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    await mode.bind(runner)
    try:
        yield router, mode
    finally:
        await mode.close()
        await runner.cleanup()


def self_signed(*hosts: str) -> tuple[bytes, bytes]:
    """A self-signed certificate (its own CA) for `hosts` and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def tls_secret(name: str, pair: tuple[bytes, bytes], namespace: str = "default", kind: str = "kubernetes.io/tls",
               version: str = "1") -> dict[str, Any]:
    """A Secret holding `pair` as the API server returns it (data base64)."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version}, "type": kind,
            "data": {"tls.crt": base64.b64encode(pair[0]).decode(), "tls.key": base64.b64encode(pair[1]).decode()}}
