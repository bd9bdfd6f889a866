"""router.gatewayAPI: Gateway API mode and the Inference Extension, switched on by the chart
(the router's flags, its default Gateway's configuration) with exactly the declared grants."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.cli import router_command
from router.config import RouterConfig

ROOT = Path(__file__).resolve().parents[3]
PERMISSIONS = yaml.safe_load((ROOT / "deploy" / "helm" / "caldera" / "files" / "permissions.yaml").read_text())
Objects = list[dict[str, Any]]
GATEWAY = frozenset({"routerGatewayAPI", "routerDefaultGateway"})
EXTENSION = GATEWAY | {"routerGatewayAPIInferenceExtension"}
GATEWAY_GROUPS = {"gateway.networking.k8s.io", "inference.networking.k8s.io"}


def gateway_values(**gateway_api: Any) -> dict[str, Any]:
    return {"router": {"gatewayAPI": gateway_api}}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def declared(conditions: frozenset[str], scope: str | None = None) -> set[tuple[str, str, str]]:
    return grants([e for e in PERMISSIONS["router"] if (not e.get("when") or e["when"] in conditions)
                   and (scope is None or e["scope"] == scope)])


def router_rules(objects: Objects, kind: str = "ClusterRole") -> list[dict[str, Any]]:
    (role,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == "caldera-router"]
    return list(role["rules"])


def router_args(objects: Objects) -> list[str]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "caldera-router"]
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def router_config(objects: Objects) -> dict[str, Any]:
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "caldera-router"]
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return config


def gateway_flags(objects: Objects) -> list[str]:
    return [a for a in router_args(objects) if a.startswith("--enable-gateway-api")]


def test_gateway_mode_router_role_grants_exactly_the_declared_gateway_permissions(
        render: Callable[..., Objects]) -> None:
    assert grants(router_rules(render(gateway_values(enabled=True)))) == declared(GATEWAY)


def test_inference_extension_router_role_grants_exactly_the_declared_permissions(
        render: Callable[..., Objects]) -> None:
    assert grants(router_rules(render(gateway_values(inferenceExtension=True)))) == declared(EXTENSION)


def test_gateway_mode_alone_grants_nothing_on_httproutes_or_inferencepools(render: Callable[..., Objects]) -> None:
    resources = {r for _, r, _ in grants(router_rules(render(gateway_values(enabled=True))))}
    assert not resources & {"httproutes", "httproutes/status", "inferencepools", "inferencepools/status"}


def test_gateway_mode_passes_the_gateway_api_flag(render: Callable[..., Objects]) -> None:
    assert gateway_flags(render(gateway_values(enabled=True))) == ["--enable-gateway-api"]


def test_inference_extension_passes_both_flags(render: Callable[..., Objects]) -> None:
    assert gateway_flags(render(gateway_values(inferenceExtension=True))) == [
        "--enable-gateway-api", "--enable-gateway-api-inference-extension"]


def test_rendered_gateway_args_are_options_of_caldera_router(render: Callable[..., Objects], tmp_path: Path) -> None:
    objects = render(gateway_values(inferenceExtension=True))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(router_config(objects)))
    args = router_args(objects)
    args = [f"--config={config}" if a.startswith("--config=") else a for a in args[args.index("router") + 1:]]
    params = router_command.make_context("router", args).params
    assert (params["enable_gateway_api"], params["enable_gateway_api_inference_extension"]) == (True, True)


def test_default_gateway_is_created_in_the_release_namespace(render: Callable[..., Objects]) -> None:
    config = RouterConfig.model_validate(router_config(render(gateway_values(enabled=True), namespace="gw-system")))
    assert (config.gateway.default_gateway.create, config.gateway.default_gateway.namespace) == (True, "gw-system")


def test_router_watching_one_namespace_creates_its_default_gateway_there(render: Callable[..., Objects]) -> None:
    objects = render({"router": {"gatewayAPI": {"enabled": True}, "watchNamespace": "serving"}})
    assert RouterConfig.model_validate(router_config(objects)).gateway.default_gateway.namespace == "serving"


def test_router_watching_one_namespace_gets_gateway_grants_there_and_only_gatewayclasses_cluster_wide(
        render: Callable[..., Objects]) -> None:
    objects = render({"router": {"gatewayAPI": {"inferenceExtension": True}, "watchNamespace": "serving"}})
    (role,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "caldera-router"]
    assert (role["metadata"]["namespace"], grants(role["rules"]), grants(router_rules(objects))) == (
        "serving", declared(EXTENSION, "namespaced"),
        {("gateway.networking.k8s.io", "gatewayclasses", "create")})


def test_without_the_default_gateway_the_router_creates_nothing(render: Callable[..., Objects]) -> None:
    objects = render(gateway_values(inferenceExtension=True, createDefaultGateway=False))
    verbs = {v for _, _, v in grants(router_rules(objects))}
    assert (verbs, RouterConfig.model_validate(router_config(objects)).gateway.default_gateway.create) == (
        {"list", "watch", "patch"}, False)


def test_gateway_values_win_over_the_router_config_on_the_default_gateway(render: Callable[..., Objects]) -> None:
    objects = render({"router": {"gatewayAPI": {"enabled": True, "createDefaultGateway": False},
                                 "config": {"gateway": {"defaultGateway": {"create": True}}}}})
    assert router_config(objects)["gateway"]["defaultGateway"]["create"] is False


def test_gateway_tls_lets_the_router_watch_secrets_and_switches_its_watch_on(render: Callable[..., Objects]) -> None:
    objects = render(gateway_values(enabled=True, tls=True))
    secrets = {x for x in grants(router_rules(objects)) if x[1] == "secrets"}
    assert (secrets, RouterConfig.model_validate(router_config(objects)).gateway.tls_secrets) == (
        {("", "secrets", "list"), ("", "secrets", "watch")}, True)


def test_gateway_mode_without_tls_reads_no_secrets(render: Callable[..., Objects]) -> None:
    objects = render(gateway_values(inferenceExtension=True))
    assert not [x for x in grants(router_rules(objects)) if x[1] == "secrets"]


def test_gateway_mode_keeps_the_rest_of_the_router_config(render: Callable[..., Objects]) -> None:
    objects = render({"router": {"gatewayAPI": {"enabled": True}, "config": {"profile": "random"}}})
    assert router_config(objects) == {"profile": "random",
                                      "gateway": {"defaultGateway": {"create": True, "namespace": "caldera-system"}}}


def test_default_router_has_no_gateway_flags_or_grants(default_objects: Objects) -> None:
    groups = {g for g, _, _ in grants(router_rules(default_objects))}
    assert (gateway_flags(default_objects), groups & GATEWAY_GROUPS) == ([], set())


def test_listener_ports_become_container_and_service_ports(render: Callable[..., Objects]) -> None:
    objects = render(gateway_values(enabled=True, listenerPorts=[8081, 9000, 8081]))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "caldera-router"]
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "caldera-router"]
    container_ports = {p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert (container_ports, service_ports) == (
        {"http": 8080, "gw-8081": 8081, "gw-9000": 9000},
        {"http": (80, "http"), "gw-8081": (8081, "gw-8081"), "gw-9000": (9000, "gw-9000")})


def test_listener_ports_without_gateway_mode_are_not_exposed(render: Callable[..., Objects]) -> None:
    objects = render(gateway_values(listenerPorts=[8081]))
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "caldera-router"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("port", [8080, 80, 443])
def test_listener_port_that_clashes_or_needs_privilege_is_refused_naming_the_value(
        render: Callable[..., Objects], port: int) -> None:
    with pytest.raises(RuntimeError, match=f"router.gatewayAPI.listenerPorts: {port} must be a port in 1024-65535"):
        render(gateway_values(enabled=True, listenerPorts=[port]))
