"""The Helm chart rendered by real helm: what it installs, and that it installs it safely."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from cryptography import x509

from caldera import helm

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "caldera"
Objects = list[dict[str, Any]]


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def test_chart_crds_are_the_repository_crds() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "helm" / "sync.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_every_repository_crd_is_rendered(default_objects: Objects) -> None:
    rendered = {o["metadata"]["name"] for o in find(default_objects, "CustomResourceDefinition")}
    expected = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (ROOT / "crds").glob("*.yaml")}
    assert expected, "crds/ is empty: run `caldera crds generate`"
    assert expected <= rendered


def test_helm_lint_passes(helm_binary: Path) -> None:
    result = subprocess.run([str(helm_binary), "lint", "--strict", str(CHART)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_install_has_controller_and_router(default_objects: Objects) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in default_objects}
    assert {("Deployment", "caldera-controller"), ("Deployment", "caldera-router"),
            ("Service", "caldera-router"), ("Service", "caldera-controller-metrics"),
            ("ServiceAccount", "caldera-controller"), ("ServiceAccount", "caldera-router"),
            ("ClusterKopfPeering", "caldera")} <= kinds


def test_default_controller_registers_its_own_webhooks_at_its_pod_ip(default_objects: Objects) -> None:
    container = one(default_objects, "Deployment", "caldera-controller")["spec"]["template"]["spec"]["containers"][0]
    assert "--webhook-host=$(POD_IP)" in container["args"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    assert not find(default_objects, "ValidatingWebhookConfiguration")


def controller_args(objects: Objects) -> list[str]:
    container = one(objects, "Deployment", "caldera-controller")["spec"]["template"]["spec"]["containers"][0]
    return list(container["args"])


def test_default_controller_never_watches_leaderworkersets_it_has_no_grant_for(default_objects: Objects) -> None:
    assert "--no-leader-worker-set" in controller_args(default_objects)


def test_leaderworkerset_support_drops_the_opt_out(render: Callable[..., Objects]) -> None:
    objects = render({"controller": {"leaderWorkerSet": {"enabled": True}}})
    assert "--no-leader-worker-set" not in controller_args(objects)


@pytest.mark.parametrize("component", ["controller", "router"])
def test_every_default_flag_is_an_option_of_the_component_command(default_objects: Objects, component: str) -> None:
    from caldera.cli import cli

    command = cli.get_command(click.Context(cli), component)
    assert command is not None
    container = one(default_objects, "Deployment", f"caldera-{component}")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    flags = {a.split("=")[0] for a in args[args.index(component) + 1:]}
    options = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    assert flags <= options, f"the chart passes flags `caldera {component}` does not have: {flags - options}"


@pytest.fixture(scope="module")
def chart_owned(render: Callable[..., Objects]) -> Objects:
    return render({"webhooks": {"certificate": {"mode": "helm"}}})


def test_chart_owned_webhooks_render_secret_service_and_configurations(chart_owned: Objects) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in chart_owned}
    assert {("Service", "caldera-webhook"), ("Secret", "caldera-webhook-tls"),
            ("ValidatingWebhookConfiguration", "caldera-validating"),
            ("MutatingWebhookConfiguration", "caldera-mutating")} <= kinds


def test_webhook_certificate_is_signed_by_the_ca_bundle_and_names_the_service(chart_owned: Objects) -> None:
    secret = one(chart_owned, "Secret", "caldera-webhook-tls")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca_bundle = one(chart_owned, "ValidatingWebhookConfiguration", "caldera-validating")["webhooks"][0][
        "clientConfig"]["caBundle"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(ca_bundle))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert "caldera-webhook.caldera-system.svc" in names


def test_every_webhook_points_at_the_webhook_service(chart_owned: Objects) -> None:
    configs = find(chart_owned, "ValidatingWebhookConfiguration") + find(chart_owned, "MutatingWebhookConfiguration")
    services = {hook["clientConfig"]["service"]["name"] for c in configs for hook in c["webhooks"]}
    assert services == {"caldera-webhook"}


def test_webhooks_cover_every_caldera_kind(chart_owned: Objects) -> None:
    plurals = {yaml.safe_load(p.read_text())["spec"]["names"]["plural"] for p in (ROOT / "crds").glob("*.yaml")}
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        covered = {r for c in find(chart_owned, kind) for hook in c["webhooks"]
                   for rule in hook["rules"] for r in rule["resources"]}
        assert plurals <= covered, f"{kind} misses {plurals - covered}"


@pytest.mark.parametrize("component", ["controller", "router"])
def test_component_runs_as_non_root_with_a_read_only_root(default_objects: Objects, component: str) -> None:
    pod = one(default_objects, "Deployment", f"caldera-{component}")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("component", ["controller", "router"])
def test_component_uses_its_own_service_account(default_objects: Objects, component: str) -> None:
    pod = one(default_objects, "Deployment", f"caldera-{component}")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"caldera-{component}"


def test_chart_owned_webhooks_mount_the_certificate_in_the_controller(chart_owned: Objects) -> None:
    pod = one(chart_owned, "Deployment", "caldera-controller")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "caldera-webhook-tls"


def test_monitoring_objects_render_when_enabled(render: Callable[..., Objects]) -> None:
    objects = render({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
                                  "prometheusRule": {"enabled": True}},
                      "grafana": {"dashboard": {"enabled": True}}})
    assert len(find(objects, "ServiceMonitor")) == 2
    assert len(find(objects, "PodMonitor")) == 1
    rule = one(objects, "PrometheusRule", "caldera")
    assert rule["spec"] == yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    dashboard = one(objects, "ConfigMap", "caldera-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["caldera.json"].strip() == (ROOT / "deploy" / "dashboards" / "caldera.json").read_text().strip()


def test_monitoring_objects_are_off_by_default(default_objects: Objects) -> None:
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & {o["kind"] for o in default_objects}


def test_cert_manager_mode_leaves_the_ca_to_cainjector(render: Callable[..., Objects]) -> None:
    objects = render({"webhooks": {"certificate": {"mode": "cert-manager"}}})
    assert find(objects, "Certificate") and not find(objects, "Secret", "caldera-webhook-tls")
    config = one(objects, "ValidatingWebhookConfiguration", "caldera-validating")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "caldera-system/caldera-webhook"
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]


def test_existing_certificate_mode_without_a_secret_name_is_an_error_naming_the_value(helm_binary: Path) -> None:
    with pytest.raises(RuntimeError, match=r"webhooks\.certificate\.secretName: required"):
        helm.template({"webhooks": {"certificate": {"mode": "existing"}}})


def test_unknown_certificate_mode_is_an_error_naming_the_value(helm_binary: Path) -> None:
    with pytest.raises(RuntimeError, match=r"webhooks\.certificate\.mode: \"acme\" is not one of controller"):
        helm.template({"webhooks": {"certificate": {"mode": "acme"}}})


def test_single_replicas_get_no_pod_disruption_budget(render: Callable[..., Objects]) -> None:
    objects = render({"controller": {"replicas": 1}, "router": {"replicas": 1}})
    assert not find(objects, "PodDisruptionBudget")


def test_values_file_documents_every_top_level_key() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = [line.split(":")[0] for i, line in enumerate(lines)
                    if line and not line.startswith((" ", "#")) and ":" in line
                    and not (i > 0 and lines[i - 1].startswith("#"))]
    assert not undocumented, f"values.yaml: top-level keys without a comment above them: {undocumented}"
