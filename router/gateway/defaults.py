"""The default GatewayClass and Gateway, created at start in cluster mode as Kthena's router does.

Kthena creates GatewayClass `kthena-router` and Gateway `default` (in its own namespace, one
HTTP listener named `default` on the router's port) when Gateway mode starts, and its
manifests attach ModelRoutes and HTTPRoutes to that Gateway. Existing objects are left as
they are; a refusal (RBAC) is logged and the router runs on without them.
"""

from __future__ import annotations

import logging
import os

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from router.gateway.objects import GATEWAY_GROUP, GATEWAY_VERSION
from router.gateway.settings import GatewaySettings
from router.gateway.status import CONTROLLER_NAME

log = logging.getLogger(__name__)


def default_namespace(settings: GatewaySettings, watched: str | None) -> str:
    return settings.default_gateway.namespace or os.environ.get("POD_NAMESPACE") or watched or "default"


def default_gateway(settings: GatewaySettings, namespace: str, port: int) -> dict[str, object]:
    return {"apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}", "kind": "Gateway",
            "metadata": {"name": settings.default_gateway.name, "namespace": namespace},
            "spec": {"gatewayClassName": settings.class_names[0],
                     "listeners": [{"name": "default", "port": port, "protocol": "HTTP"}]}}


def ensure_defaults(api: client.ApiClient, settings: GatewaySettings, watched: str | None, port: int) -> None:
    """Create the GatewayClass and the default Gateway when absent (blocking; run in a thread)."""
    custom = client.CustomObjectsApi(api)
    gc = {"apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}", "kind": "GatewayClass",
          "metadata": {"name": settings.class_names[0]}, "spec": {"controllerName": CONTROLLER_NAME}}
    ns = default_namespace(settings, watched)
    for what, create in (
            (f"GatewayClass {settings.class_names[0]}",
             lambda: custom.create_cluster_custom_object(GATEWAY_GROUP, GATEWAY_VERSION, "gatewayclasses", gc)),
            (f"Gateway {ns}/{settings.default_gateway.name}",
             lambda: custom.create_namespaced_custom_object(GATEWAY_GROUP, GATEWAY_VERSION, ns, "gateways",
                                                            default_gateway(settings, ns, port)))):
        try:
            create()
            log.info(f"created the default {what}", extra={"port": port})
        except ApiException as exc:
            if exc.status == 409:
                continue  # already there: left as it is
            if exc.status == 404:
                return  # the Gateway API CRDs are not installed (discovery says so)
            log.warning(f"cannot create the default {what}; routes attached to it are not served until it "
                        "exists", extra={"status": exc.status, "reason": str(exc.reason)})
        except Exception as exc:  # API server unreachable: discovery retries its own calls; this is best effort
            log.warning(f"cannot create the default {what}", extra={"reason": repr(exc)})
