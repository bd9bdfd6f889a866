from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from caldera.localcluster import pki


def test_admin_certificate_is_in_system_masters(tmp_path: Path) -> None:
    p = pki.ensure(tmp_path, "10.96.0.1")
    cert = x509.load_pem_x509_certificate(p.admin_cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == "system:masters"


def test_serving_certificate_verifies_against_ca_for_loopback(tmp_path: Path) -> None:
    p = pki.ensure(tmp_path, "10.96.0.1")
    cert = x509.load_pem_x509_certificate(p.serving_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    ctx = ssl.create_default_context(cafile=str(p.ca_cert))
    ctx.load_cert_chain(str(p.admin_cert), str(p.admin_key))


def test_existing_material_is_reused(tmp_path: Path) -> None:
    first = pki.ensure(tmp_path, "10.96.0.1").ca_cert.read_bytes()
    assert pki.ensure(tmp_path, "10.96.0.1").ca_cert.read_bytes() == first
