"""Typed configuration of Gateway API mode (the `gateway:` section of the router config)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.gateway.table import DEFAULT_CLASS_NAMES


class DefaultGateway(BaseModel):
    """The Gateway Kthena's router creates at start in Gateway mode, on the router's own port, so
    that routes with `parentRefs: [{name: default, namespace: <router namespace>}]` are served."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    create: bool = True  # cluster mode: create it (and its GatewayClass) when absent
    name: str = "default"
    namespace: str | None = None  # None: $POD_NAMESPACE, else the watched namespace, else "default"


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # Kthena: --enable-gateway-api. ModelRoutes with parentRefs serve on their Gateway's listeners.
    enable_gateway_api: bool = Field(False, alias="enableGatewayAPI")
    # Kthena: --enable-gateway-api-inference-extension. HTTPRoute -> InferencePool; implies the above.
    enable_inference_extension: bool = Field(False, alias="enableGatewayAPIInferenceExtension")
    # Gateways of these GatewayClass names are served; others are left to other controllers.
    class_names: list[str] = Field(default_factory=lambda: list(DEFAULT_CLASS_NAMES), alias="gatewayClassNames",
                                   min_length=1)
    # Honour Gateway listeners' allowedRoutes.namespaces (Same, the API default, or All; Selector is
    # refused). Off by default: Kthena attaches routes of any namespace, and its manifests rely on it.
    enforce_allowed_routes: bool = Field(False, alias="enforceAllowedRoutes")
    default_gateway: DefaultGateway = Field(default_factory=DefaultGateway, alias="defaultGateway")
    # Write Accepted/Programmed (Gateway) and Accepted/ResolvedRefs (HTTPRoute) status in cluster mode.
    write_status: bool = Field(True, alias="writeStatus")
    # Cluster mode: watch Secrets of type kubernetes.io/tls so that HTTPS listeners terminate TLS
    # with their certificateRefs (RBAC list/watch on secrets; chart: router.gatewayAPI.tls). Off:
    # HTTPS listeners report ResolvedRefs=False and are not served.
    tls_secrets: bool = Field(False, alias="tlsSecrets")
    # Static mode (no cluster): the objects themselves, as they would be applied.
    gateways: list[dict[str, Any]] = Field(default_factory=list)
    secrets: list[dict[str, Any]] = Field(default_factory=list)  # kubernetes.io/tls Secrets of HTTPS listeners
    # Service backendRefs: the Services and their EndpointSlices (discovery.k8s.io/v1).
    services: list[dict[str, Any]] = Field(default_factory=list)
    endpoint_slices: list[dict[str, Any]] = Field(default_factory=list, alias="endpointSlices")
    http_routes: list[dict[str, Any]] = Field(default_factory=list, alias="httpRoutes")
    inference_pools: list[dict[str, Any]] = Field(default_factory=list, alias="inferencePools")

    @model_validator(mode="after")
    def _extension_needs_gateways(self) -> GatewaySettings:
        if self.enable_inference_extension:
            self.enable_gateway_api = True  # HTTPRoutes attach to Gateways: one needs the other
        return self

    @property
    def enabled(self) -> bool:
        return self.enable_gateway_api
