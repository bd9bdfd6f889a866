"""HTTPS Gateway listeners: certificateRefs resolved to kubernetes.io/tls Secrets (pure), listener
status for bad references, and real TLS served by the router (static mode) with a self-signed
certificate generated here: the certificate served, SNI, reload on a Secret change, a broken
Secret keeping the port closed."""

import asyncio
import ssl
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from router.gateway.harness import self_signed, static_gateway_router, tls_secret
from router.gateway.mode import GatewayMode
from router.gateway.objects import CertRef, compile_gateway
from router.gateway.status import desired_gateway
from router.gateway.table import GatewayTable
from router.gateway.tls import CertificateRefError, pick_by_sni, resolve
from router.harness import Engines, free_port, route, server, wait_until
from router.server import Router

MAIN = 8080


def https(name: str, port: int, secret: str, hostname: str | None = None, **tls: Any) -> dict[str, Any]:
    listener: dict[str, Any] = {"name": name, "port": port, "protocol": "HTTPS",
                                "tls": {"mode": "Terminate", "certificateRefs": [{"name": secret}], **tls}}
    if hostname:
        listener["hostname"] = hostname
    return listener


def gateway(*listeners: dict[str, Any], name: str = "edge", ns: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"gatewayClassName": "kthena-router", "listeners": list(listeners)}}


PAIR = self_signed("gw.example.com")
OTHER = self_signed("other.example.com")


# ---- pure: certificateRefs -------------------------------------------------------------------


def refs(name: str = "cert", ns: str = "default", **kw: str) -> tuple[CertRef, ...]:
    return (CertRef(namespace=ns, name=name, **kw),)


def secrets(*objs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in objs}


def test_a_tls_secret_resolves_to_its_certificate_and_key() -> None:
    cert = resolve("default", refs(), secrets(tls_secret("cert", PAIR)))
    assert (cert.source, cert.cert_pem, cert.key_pem) == ("default/cert", PAIR[0], PAIR[1])


@pytest.mark.parametrize(("given", "ref", "reason", "says"), [
    ((), refs(), "InvalidCertificateRef", "default/cert not found"),
    ((tls_secret("cert", PAIR, kind="Opaque"),), refs(), "InvalidCertificateRef", "type Opaque"),
    ((tls_secret("cert", (PAIR[0], OTHER[1])),), refs(), "InvalidCertificateRef", "does not match"),
    ((tls_secret("cert", (b"junk", PAIR[1])),), refs(), "InvalidCertificateRef", "tls.crt is not a PEM"),
    ((tls_secret("cert", PAIR, namespace="certs"),), refs(ns="certs"), "RefNotPermitted", "another namespace"),
    ((tls_secret("cert", PAIR),), refs(kind="ConfigMap"), "InvalidCertificateRef", "only core Secrets"),
    ((tls_secret("cert", PAIR),), (), "InvalidCertificateRef", "certificateRefs is empty"),
])
def test_an_unusable_certificate_ref_is_refused_with_the_spec_reason(
        given: tuple[dict[str, Any], ...], ref: tuple[CertRef, ...], reason: str, says: str) -> None:
    with pytest.raises(CertificateRefError) as caught:
        resolve("default", ref, secrets(*given))
    assert caught.value.reason == reason and says in caught.value.message


def test_without_reading_secrets_an_https_listener_says_how_to_enable_it() -> None:
    with pytest.raises(CertificateRefError, match=r"gateway\.tlsSecrets"):
        resolve("default", refs(), None)


def test_sni_picks_the_exact_hostname_then_the_longest_wildcard_then_the_catch_all() -> None:
    hosts = [None, "*.example.com", "*.api.example.com", "gw.example.com"]
    assert [pick_by_sni(hosts, h) for h in ("gw.example.com", "a.api.example.com", "b.example.com", "x.org")] == [
        3, 2, 1, 0]


# ---- pure: the table and the Gateway status ---------------------------------------------------


def build(gw: dict[str, Any], *objs: dict[str, Any], read: bool = True) -> GatewayTable:
    return GatewayTable.build([gw], secrets=list(objs) if read else None, main_port=MAIN)


def listener_conditions(gw: dict[str, Any], table: GatewayTable, name: str) -> dict[str, tuple[str, str]]:
    status = desired_gateway(gw, table, {}, set(table.ports()) | {MAIN})
    assert status is not None
    (ls,) = [x for x in status["listeners"] if x["name"] == name]
    return {c["type"]: (c["status"], c["reason"]) for c in ls["conditions"]}


def test_https_listener_with_a_usable_secret_is_served_with_its_certificate() -> None:
    table = build(gateway(https("tls", 8443, "cert")), tls_secret("cert", PAIR))
    assert table.port_tls()[8443] == ((None, resolve("default", refs(), secrets(tls_secret("cert", PAIR)))),)


def test_missing_secret_sets_resolved_refs_false_invalid_certificate_ref_and_the_listener_is_not_served() -> None:
    gw = gateway(https("tls", 8443, "absent"))
    table = build(gw)
    conds = listener_conditions(gw, table, "tls")
    assert 8443 not in table.ports()
    assert conds["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert conds["Programmed"] == ("False", "Invalid") and conds["Accepted"] == ("True", "Accepted")


def test_cross_namespace_certificate_ref_is_ref_not_permitted() -> None:
    gw = gateway({**https("tls", 8443, "cert"), "tls": {"certificateRefs": [{"name": "cert", "namespace": "x"}]}})
    conds = listener_conditions(gw, build(gw, tls_secret("cert", PAIR, namespace="x")), "tls")
    assert conds["ResolvedRefs"] == ("False", "RefNotPermitted")


def test_passthrough_and_tls_protocol_listeners_are_unsupported_protocol() -> None:
    gw = gateway(https("pass", 8443, "cert", mode="Passthrough"),
                 {"name": "tlsroute", "port": 8444, "protocol": "TLS", "tls": {"mode": "Passthrough"}})
    table = build(gw, tls_secret("cert", PAIR))
    assert compile_gateway(gw).listeners == () and table.ports() == set()
    for name in ("pass", "tlsroute"):
        assert listener_conditions(gw, table, name)["Accepted"] == ("False", "UnsupportedProtocol")


def test_http_and_https_on_one_port_conflict_and_the_second_is_not_served() -> None:
    gw = gateway({"name": "plain", "port": 8443, "protocol": "HTTP"}, https("tls", 8443, "cert"))
    table = build(gw, tls_secret("cert", PAIR))
    assert [x.name for x in table.by_port[8443]] == ["plain"] and table.port_tls() == {8443: None}
    assert listener_conditions(gw, table, "tls")["Conflicted"] == ("True", "ProtocolConflict")


def test_https_on_the_routers_plain_main_port_is_port_unavailable() -> None:
    gw = gateway(https("tls", MAIN, "cert"))
    conds = listener_conditions(gw, build(gw, tls_secret("cert", PAIR)), "tls")
    assert conds["Accepted"] == ("False", "PortUnavailable")


# ---- real TLS ---------------------------------------------------------------------------------


def tls_router(gw: dict[str, Any], secret_objs: list[dict[str, Any]], **cfg: Any
               ) -> AbstractAsyncContextManager[tuple[Router, GatewayMode]]:
    return static_gateway_router({**cfg, "gateway": {"enableGatewayAPI": True, "gateways": [gw],
                                                     "secrets": secret_objs}})


def trusting(*pairs: tuple[bytes, bytes]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata="".join(p[0].decode() for p in pairs))
    return ctx


async def served_cert(port: int, server_name: str, trust: ssl.SSLContext) -> bytes:
    """The certificate the port presents for `server_name` (PEM), over a verified handshake."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust, server_hostname=server_name)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


async def test_https_listener_serves_tls_with_the_secrets_certificate() -> None:
    port = free_port()
    async with tls_router(gateway(https("tls", port, "cert")), [tls_secret("cert", PAIR)]):
        async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/healthz", ssl=trusting(PAIR),
                                                         server_hostname="gw.example.com") as r:
            assert (r.status, await r.text()) == (200, "ok")
        assert await served_cert(port, "gw.example.com", trusting(PAIR)) == PAIR[0]


async def test_https_listener_does_not_answer_plain_http() -> None:
    port = free_port()
    async with (tls_router(gateway(https("tls", port, "cert")), [tls_secret("cert", PAIR)]),
                aiohttp.ClientSession() as s):
            with pytest.raises(aiohttp.ClientError):
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    await r.read()


async def test_sni_selects_the_certificate_of_the_listener_for_that_hostname() -> None:
    port = free_port()
    gw = gateway(https("gw", port, "gw-cert", hostname="gw.example.com"),
                 https("other", port, "other-cert", hostname="other.example.com"))
    async with tls_router(gw, [tls_secret("gw-cert", PAIR), tls_secret("other-cert", OTHER)]):
        trust = trusting(PAIR, OTHER)
        assert (await served_cert(port, "gw.example.com", trust), await served_cert(port, "other.example.com", trust)
                ) == (PAIR[0], OTHER[0])


async def test_a_changed_secret_is_served_after_the_reload_without_reopening_the_port() -> None:
    port = free_port()
    gw = gateway(https("tls", port, "cert"))
    renewed = self_signed("gw.example.com")
    async with tls_router(gw, [tls_secret("cert", PAIR)]) as (_router, mode):
        site = mode.listeners.sites[port]
        mode.update([], [gw], [], [], [tls_secret("cert", renewed, version="2")])
        await mode.settle()
        assert await served_cert(port, "gw.example.com", trusting(renewed)) == renewed[0]
        assert mode.listeners.sites[port] is site


async def test_a_connection_opened_before_the_reload_keeps_serving() -> None:
    port = free_port()
    gw = gateway(https("tls", port, "cert"))
    async with (tls_router(gw, [tls_secret("cert", PAIR)]) as (_router, mode),
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s):
        url, trust = f"https://127.0.0.1:{port}/healthz", trusting(PAIR)
        async with s.get(url, ssl=trust, server_hostname="gw.example.com") as r:
            await r.read()
        mode.update([], [gw], [], [], [tls_secret("cert", self_signed("gw.example.com"), version="2")])
        await mode.settle()
        async with s.get(url, ssl=trust, server_hostname="gw.example.com") as r:  # the pooled connection
            assert (r.status, await r.text()) == (200, "ok")


async def test_a_client_without_sni_gets_the_certificate_of_the_listener_without_hostname() -> None:
    port = free_port()
    gw = gateway(https("named", port, "other-cert", hostname="other.example.com"), https("any", port, "gw-cert"))
    async with tls_router(gw, [tls_secret("gw-cert", PAIR), tls_secret("other-cert", OTHER)]):
        trust = trusting(PAIR)
        trust.check_hostname = False
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust, server_hostname="")
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        await writer.wait_closed()
        assert x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM) == PAIR[0]


async def test_a_port_switching_from_https_to_http_is_reopened_plain() -> None:
    port = free_port()
    async with tls_router(gateway(https("tls", port, "cert")), [tls_secret("cert", PAIR)]) as (_router, mode):
        mode.update([], [gateway({"name": "plain", "port": port, "protocol": "HTTP"})], [], [], [])
        await mode.settle()
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200


async def test_a_broken_secret_keeps_the_port_closed_and_a_fixed_one_opens_it() -> None:
    port = free_port()
    gw = gateway(https("tls", port, "cert"))
    async with tls_router(gw, [tls_secret("cert", (PAIR[0], OTHER[1]))]) as (_router, mode):
        assert port not in mode.listeners.open_ports()
        assert mode.table.problems["default/edge/tls"].reason == "InvalidCertificateRef"
        mode.update([], [gw], [], [], [tls_secret("cert", PAIR, version="2")])
        await wait_until(lambda: port in mode.listeners.open_ports(), timeout=10)
        assert await served_cert(port, "gw.example.com", trusting(PAIR)) == PAIR[0]


@pytest.mark.slow
async def test_a_model_route_attached_to_an_https_listener_is_served_over_tls(engines: Engines) -> None:
    engine = await engines.start("small-0", "--served-model-name", "small-1b", labels={"app": "small"})
    port = free_port()
    chat = route("chat", "chat", [{"targetModels": [{"modelServerName": "small"}]}])
    chat["spec"]["parentRefs"] = [{"name": "edge", "sectionName": "tls"}]
    async with tls_router(gateway(https("tls", port, "cert")), [tls_secret("cert", PAIR)],
                          modelServers=[server("small", model="small-1b")], modelRoutes=[chat],
                          endpoints=[engine.endpoint()]):
        async with aiohttp.ClientSession() as s, s.post(
                f"https://127.0.0.1:{port}/v1/completions", ssl=trusting(PAIR), server_hostname="gw.example.com",
                json={"model": "chat", "prompt": "hello", "max_tokens": 2}) as r:
            body = await r.json()
        assert r.status == 200 and body["model"] == "small-1b"
