"""ModelRoute and ModelServer (`networking.serving.volcano.sh/v1alpha1`): Kthena's router API.

A ModelRoute maps a request's `model` (or LoRA adapter) through ordered rules to weighted
target ModelServers; a ModelServer selects the engine pods that serve one model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from caldera.k8s.meta import ObjectMeta
from caldera.k8s.types import Duration, Int32, KubeModel, cel

GROUP = "networking.serving.volcano.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

InferenceEngine = Literal["vLLM", "SGLang"]
KVConnectorType = Literal["http", "lmcache", "nixl", "mooncake"]
RateLimitUnit = Literal["second", "minute", "hour", "day", "month"]
WorkloadProtocol = Literal["http", "https"]

_ONE_TARGET_RULE = (
    '(has(self.modelServerName) && self.modelServerName != "") != '
    '(has(self.externalModelProviderName) && self.externalModelProviderName != "")'
)


class ParentReference(KubeModel):
    """Gateway API `ParentReference` (the Gateway a route attaches to)."""

    group: Annotated[
        str, Field(max_length=253, pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    ] = "gateway.networking.k8s.io"
    kind: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")] = (
        "Gateway"
    )
    namespace: Annotated[
        str | None, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ] = None
    name: Annotated[str, Field(min_length=1, max_length=253)]
    section_name: Annotated[
        str | None,
        Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
    ] = None
    port: Annotated[Int32 | None, Field(ge=1, le=65535)] = None


class StringMatch(KubeModel):
    """Exactly one of exact, prefix or regex (RE2 syntax)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) <= 1",
                    "only one of exact, prefix or regex may be set",
                )
            ]
        }
    )

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> StringMatch:
        if sum(value is not None for value in (self.exact, self.prefix, self.regex)) > 1:
            raise ValueError("only one of exact, prefix or regex may be set")
        return self


class BodyMatch(KubeModel):
    model: str | None = None


class ModelMatch(KubeModel):
    """Conditions ANDed together; an empty match matches every request."""

    headers: dict[str, StringMatch] | None = None
    uri: StringMatch | None = None
    body: BodyMatch | None = None


class TargetModel(KubeModel):
    """One weighted destination: a ModelServer or an ExternalModelProvider in the same namespace."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(_ONE_TARGET_RULE, "exactly one of modelServerName or externalModelProviderName must be set")
            ]
        }
    )

    model_server_name: str | None = None
    external_model_provider_name: str | None = None
    weight: Annotated[int, Field(ge=0, le=100)] = 100

    @model_validator(mode="after")
    def _exactly_one_target(self) -> TargetModel:
        if bool(self.model_server_name) == bool(self.external_model_provider_name):
            raise ValueError("exactly one of modelServerName or externalModelProviderName must be set")
        return self


class Rule(KubeModel):
    name: str | None = None
    model_match: ModelMatch | None = None
    target_models: Annotated[list[TargetModel], Field(min_length=1, max_length=16)]


class RedisConfig(KubeModel):
    address: str


class GlobalRateLimit(KubeModel):
    redis: RedisConfig | None = None


class RateLimit(KubeModel):
    """Token budgets per unit of time; global (Redis) when `global` is set, else per router."""

    input_tokens_per_unit: Annotated[int | None, Field(ge=1)] = None
    output_tokens_per_unit: Annotated[int | None, Field(ge=1)] = None
    unit: RateLimitUnit = "second"
    global_: GlobalRateLimit | None = Field(default=None, alias="global")


class ModelRouteSpec(KubeModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    '(has(self.modelName) && self.modelName != "") || '
                    "(has(self.loraAdapters) && size(self.loraAdapters) > 0)",
                    "ModelName and LoraAdapters cannot both be empty",
                )
            ]
        }
    )

    model_name: Annotated[
        str | None,
        Field(json_schema_extra={"x-kubernetes-validations": [cel("self == oldSelf", "modelName is immutable")]}),
    ] = None
    lora_adapters: Annotated[list[str] | None, Field(max_length=10)] = None
    parent_refs: list[ParentReference] | None = None
    rules: Annotated[list[Rule], Field(max_length=16)]
    rate_limit: RateLimit | None = None

    @model_validator(mode="after")
    def _model_or_adapters(self) -> ModelRouteSpec:
        if not self.model_name and not self.lora_adapters:
            raise ValueError("ModelName and LoraAdapters cannot both be empty")
        return self


class ModelRouteStatus(KubeModel):
    """Empty in Kthena."""


class ModelRoute(KubeModel):
    """networking.serving.volcano.sh/v1alpha1 ModelRoute."""

    api_version: Literal["networking.serving.volcano.sh/v1alpha1"] = "networking.serving.volcano.sh/v1alpha1"
    kind: Literal["ModelRoute"] = "ModelRoute"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelRouteSpec
    status: ModelRouteStatus | None = None


class PDGroup(KubeModel):
    """Prefill and decode pods of one group (same value of `groupKey`) are paired."""

    group_key: str
    prefill_labels: dict[str, str]
    decode_labels: dict[str, str]


class WorkloadSelector(KubeModel):
    match_labels: dict[str, str] | None = None
    pd_group: PDGroup | None = Field(default=None, alias="pdGroup")


class WorkloadPort(KubeModel):
    port: Annotated[Int32, Field(ge=1, le=65535)]
    protocol: WorkloadProtocol = "http"


class Retry(KubeModel):
    attempts: Int32 = 0
    retry_interval: Duration = "100ms"


class TrafficPolicy(KubeModel):
    timeout: Duration | None = None
    retry: Retry | None = None


class KVConnectorSpec(KubeModel):
    type: KVConnectorType = "http"


class ModelServerSpec(KubeModel):
    model: Annotated[str | None, Field(max_length=256)] = None
    inference_engine: InferenceEngine
    workload_selector: WorkloadSelector
    workload_port: WorkloadPort
    traffic_policy: TrafficPolicy | None = None
    kv_connector: KVConnectorSpec | None = Field(default=None, alias="kvConnector")


class ModelServerStatus(KubeModel):
    """Empty in Kthena."""


class ModelServer(KubeModel):
    """networking.serving.volcano.sh/v1alpha1 ModelServer."""

    api_version: Literal["networking.serving.volcano.sh/v1alpha1"] = "networking.serving.volcano.sh/v1alpha1"
    kind: Literal["ModelServer"] = "ModelServer"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelServerSpec
    status: ModelServerStatus | None = None
