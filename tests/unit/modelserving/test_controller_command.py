from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509

from caldera.controller import controller_command, default_placement, generate_webhook_tls


def test_generated_webhook_certificate_names_the_host_and_is_signed_by_its_ca(tmp_path: Path) -> None:
    tls = generate_webhook_tls(tmp_path, ["127.0.0.1", "localhost"])
    cert = x509.load_pem_x509_certificate(tls.certfile.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate(tls.cafile.read_bytes())
    cert.verify_directly_issued_by(ca)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.certfile, tls.keyfile)  # the key matches the certificate


def test_placement_defaults_to_caldera_once_the_placement_controller_exists() -> None:
    assert default_placement() == "caldera"


def test_help_lists_the_operational_flags() -> None:
    out = CliRunner().invoke(controller_command, ["--help"]).output
    for flag in ("--placement", "--metrics-port", "--health-port", "--peering", "--priority", "--webhook-port",
                 "--webhook-cert-dir", "--namespace"):
        assert flag in out
