"""TLS termination for HTTPS Gateway listeners: certificateRefs resolved to Secrets, checked,
and turned into the `ssl.SSLContext` a listener port serves with.

`resolve` is pure (the Secrets are dicts, as the API server returns them); a reference that
cannot be used raises `CertificateRefError` with the Gateway API listener condition reason:
`InvalidCertificateRef` (missing Secret, wrong type or kind, unreadable or mismatched PEM) or
`RefNotPermitted` (another namespace: that needs a ReferenceGrant, which the router does not
read). `port_context` builds one context per port; with several HTTPS listeners on a port the
certificate is picked by SNI, longest matching hostname first, as the spec asks.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from router.gateway.objects import CertRef, wildcard_match

TLS_SECRET_TYPE = "kubernetes.io/tls"


class CertificateRefError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Certificate:
    source: str  # namespace/name of the Secret
    cert_pem: bytes
    key_pem: bytes
    resource_version: str = field(default="", compare=False)  # a metadata-only change reloads nothing


def _decode(secret: Mapping[str, Any], key: str, where: str) -> bytes:
    text = (secret.get("stringData") or {}).get(key)  # static configuration may give it in clear
    if isinstance(text, str) and text:
        return text.encode()
    raw = (secret.get("data") or {}).get(key)
    if not isinstance(raw, str) or not raw:
        raise CertificateRefError("InvalidCertificateRef", f"{where} has no data[{key!r}]")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateRefError("InvalidCertificateRef", f"{where}: data[{key!r}] is not base64") from None


def check_pair(cert_pem: bytes, key_pem: bytes, where: str) -> None:
    """The PEM certificate chain and key parse and the key belongs to the first certificate."""
    problem = _pair_problem(cert_pem, key_pem)
    if problem is not None:
        raise CertificateRefError("InvalidCertificateRef", f"{where}: {problem}")


@lru_cache(maxsize=256)
def _pair_problem(cert_pem: bytes, key_pem: bytes) -> str | None:
    """Cached: the routing state is rebuilt on every pod change, certificates rarely change."""
    try:
        _check_pair(cert_pem, key_pem)
    except CertificateRefError as exc:
        return exc.message
    return None


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CertificateRefError("InvalidCertificateRef", f"tls.crt is not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateRefError("InvalidCertificateRef",
                                  f"tls.key is not an unencrypted PEM private key ({exc})") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != chain[0].public_key().public_bytes(
            serialization.Encoding.DER, pub):
        raise CertificateRefError("InvalidCertificateRef", "tls.key does not match the certificate")


def resolve(gateway_namespace: str, refs: Sequence[CertRef], secrets: Mapping[str, Mapping[str, Any]] | None
            ) -> Certificate:
    """The certificate of a listener: its first certificateRef (one Secret is the spec's Core support)."""
    if secrets is None:
        raise CertificateRefError("InvalidCertificateRef", "the router does not read Secrets: HTTPS listeners need "
                                  "gateway.tlsSecrets and RBAC list/watch on secrets (chart: router.gatewayAPI.tls)")
    if not refs:
        raise CertificateRefError("InvalidCertificateRef", "tls.certificateRefs is empty")
    ref = refs[0]
    where = f"Secret {ref.namespace}/{ref.name}"
    if (ref.group, ref.kind) != ("", "Secret"):
        raise CertificateRefError("InvalidCertificateRef",
                                  f"certificateRefs[0]: only core Secrets are supported, got {ref.group}/{ref.kind}")
    if ref.namespace != gateway_namespace:
        raise CertificateRefError("RefNotPermitted", f"{where} is in another namespace than the Gateway "
                                  "(ReferenceGrants are not supported)")
    secret = secrets.get(f"{ref.namespace}/{ref.name}")
    if secret is None:
        raise CertificateRefError("InvalidCertificateRef", f"{where} not found")
    kind = secret.get("type") or "Opaque"
    if kind != TLS_SECRET_TYPE:
        raise CertificateRefError("InvalidCertificateRef", f"{where} has type {kind}, not {TLS_SECRET_TYPE}")
    cert_pem, key_pem = _decode(secret, "tls.crt", where), _decode(secret, "tls.key", where)
    check_pair(cert_pem, key_pem, where)
    version = str((secret.get("metadata") or {}).get("resourceVersion") or "")
    return Certificate(source=f"{ref.namespace}/{ref.name}", cert_pem=cert_pem, key_pem=key_pem,
                       resource_version=version)


# ---- SSL contexts (the shell side) ----------------------------------------------------------

# (listener hostname or None for every host, certificate), for the HTTPS listeners of one port
PortTLS = tuple[tuple[str | None, Certificate], ...]


def server_context(cert: Certificate) -> ssl.SSLContext:
    """A server context with the certificate loaded (the ssl module reads PEM from files only:
    they live in a private temporary directory for the duration of the call)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="caldera-tls-") as tmp:
        crt, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for path, data in ((crt, cert.cert_pem), (key, cert.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(crt, key)
    return ctx


def pick_by_sni(hostnames: Sequence[str | None], server_name: str) -> int | None:
    """Index of the listener hostname that claims `server_name` most specifically: exact, then the
    longest wildcard, then a listener without hostname."""
    best, best_rank = None, (0, 0)
    for i, h in enumerate(hostnames):
        rank = ((1, 0) if h is None else (3, len(h)) if h == server_name
                else (2, len(h)) if wildcard_match(h, server_name) else (0, 0))
        if rank > best_rank:
            best, best_rank = i, rank
    return best


class PortCertificates:
    """The certificates one HTTPS port serves, replaceable while it serves.

    The port's listening context (`front`) hands every handshake, with or without SNI, to the
    context of the listener that claims the server name (OpenSSL calls the SNI callback for
    every ClientHello). A Secret change builds new contexts and swaps them in (`update`): new
    handshakes get the new certificate at once, the port never closes, and connections already
    open keep theirs."""

    def __init__(self, entries: PortTLS) -> None:
        self.entries: PortTLS = ()
        self._hostnames: list[str | None] = []
        self._contexts: list[ssl.SSLContext] = []
        self._default = 0
        self.update(entries)
        self.front = self._contexts[self._default]
        self.front.sni_callback = self._on_hello  # type: ignore[assignment]  # typeshed: SSLSocket only

    def update(self, entries: PortTLS) -> None:
        """Build every context first: a certificate that does not load leaves the current ones."""
        contexts = [server_context(cert) for _, cert in entries]
        hostnames = [h for h, _ in entries]
        self._hostnames, self._contexts, self.entries = hostnames, contexts, entries
        self._default = next((i for i, h in enumerate(hostnames) if h is None), 0)

    def _on_hello(self, sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        i = pick_by_sni(self._hostnames, server_name.rstrip(".").lower()) if server_name else None
        sock.context = self._contexts[self._default if i is None else i]
