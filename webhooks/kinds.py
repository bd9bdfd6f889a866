"""The custom resources Caldera serves: kind -> model class, CRD names and presentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoscaler.api import AutoscalingPolicy, AutoscalingPolicyBinding
from caldera.k8s.types import KubeModel
from modelserving.api import ModelServing
from router.api import ModelRoute, ModelServer
from router.providers.api import ExternalModelProvider


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0

    def to_dict(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class Resource:
    kind: str
    group: str
    version: str
    plural: str
    model: type[KubeModel]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("caldera", "kthena")
    printer_columns: tuple[PrinterColumn, ...] = (AGE,)
    # (specReplicasPath, statusReplicasPath, labelSelectorPath) when the kind has a scale subresource.
    scale: tuple[str, str, str] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


WORKLOAD = "workload.serving.volcano.sh"
NETWORKING = "networking.serving.volcano.sh"

RESOURCES: tuple[Resource, ...] = (
    Resource(
        kind="ModelServing",
        group=WORKLOAD,
        version="v1alpha1",
        plural="modelservings",
        model=ModelServing,
        short_names=("ms",),
        categories=("all", "caldera", "kthena"),
        printer_columns=(
            PrinterColumn("Replicas", "integer", ".status.replicas", "Total number of serving groups"),
            PrinterColumn("Available", "integer", ".status.availableReplicas", "Number of serving groups that are ready"),
            PrinterColumn(
                "Updated", "integer", ".status.updatedReplicas", "Number of serving groups updated to the latest revision"
            ),
            AGE,
        ),
        scale=(".spec.replicas", ".status.replicas", ".status.labelSelector"),
    ),
    Resource(
        kind="AutoscalingPolicy",
        group=WORKLOAD,
        version="v1alpha1",
        plural="autoscalingpolicies",
        model=AutoscalingPolicy,
        short_names=("asp",),
        printer_columns=(
            PrinterColumn("Tolerance", "integer", ".spec.tolerancePercent", "Tolerated deviation in percent", 1),
            AGE,
        ),
    ),
    Resource(
        kind="AutoscalingPolicyBinding",
        group=WORKLOAD,
        version="v1alpha1",
        plural="autoscalingpolicybindings",
        model=AutoscalingPolicyBinding,
        short_names=("aspb",),
        printer_columns=(
            PrinterColumn("Policy", "string", ".spec.policyRef.name", "The bound AutoscalingPolicy"),
            AGE,
        ),
    ),
    Resource(
        kind="ModelRoute",
        group=NETWORKING,
        version="v1alpha1",
        plural="modelroutes",
        model=ModelRoute,
        short_names=("mr",),
        printer_columns=(PrinterColumn("Model", "string", ".spec.modelName", "The request model matched"), AGE),
    ),
    Resource(
        kind="ModelServer",
        group=NETWORKING,
        version="v1alpha1",
        plural="modelservers",
        model=ModelServer,
        short_names=("msvr",),
        printer_columns=(
            PrinterColumn("Engine", "string", ".spec.inferenceEngine", "Inference engine used to serve the model"),
            PrinterColumn("Port", "integer", ".spec.workloadPort.port", "Model server port"),
            PrinterColumn("Protocol", "string", ".spec.workloadPort.protocol", "Model server protocol"),
            AGE,
        ),
    ),
    Resource(
        kind="ExternalModelProvider",
        group=NETWORKING,
        version="v1alpha1",
        plural="externalmodelproviders",
        model=ExternalModelProvider,
        short_names=("emp",),
        printer_columns=(
            PrinterColumn("Type", "string", ".spec.providerType", "Provider API type"),
            PrinterColumn("BaseURL", "string", ".spec.baseURL", "Provider endpoint root"),
            PrinterColumn("Ready", "string", ".status.conditions[?(@.type==\"Ready\")].status",
                          "Whether the router can use the provider"),
            AGE,
        ),
    ),
)

BY_KIND: dict[str, Resource] = {resource.kind: resource for resource in RESOURCES}


def resource_for(api_version: str | None, kind: str | None) -> Resource | None:
    """The Caldera resource with this apiVersion and kind, if it is one."""
    resource = BY_KIND.get(kind or "")
    if resource is None or resource.api_version != api_version:
        return None
    return resource
