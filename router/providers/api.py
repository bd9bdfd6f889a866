"""ExternalModelProvider (`networking.serving.volcano.sh/v1alpha1`, Kthena after v1.0.0).

A hosted model API outside the cluster (OpenAI-compatible or Anthropic) that a ModelRoute
`targetModels` entry names with `externalModelProviderName`. Credentials live in a Secret of
the same namespace that carries the label `CREDENTIAL_LABEL=true`; the router watches only
such Secrets, so an unlabelled Secret is never read.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from caldera.k8s.meta import Condition, ObjectMeta
from caldera.k8s.pod import SecretKeySelector
from caldera.k8s.types import KubeModel, cel

ProviderType = Literal["OpenAI", "Anthropic"]
AuthScheme = Literal["Bearer", "APIKey"]

CREDENTIAL_LABEL = "networking.serving.volcano.sh/external-model-provider-credential"
CREDENTIAL_LABEL_VALUE = "true"

# Condition types and reasons (Kthena's constants, so tools reading either agree).
READY = "Ready"
CREDENTIALS_RESOLVED = "CredentialsResolved"


class ProviderAuth(KubeModel):
    """How the credential is loaded (a key of a labelled Secret) and sent upstream."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!has(self.secretRef.optional) || !self.secretRef.optional",
                    "secretRef.optional must be false or unset")
            ]
        }
    )

    # Unset: the provider type's own scheme (OpenAI: Bearer, Anthropic: APIKey as x-api-key).
    scheme: AuthScheme | None = None
    secret_ref: SecretKeySelector


class ExternalModelProviderSpec(KubeModel):
    provider_type: ProviderType = "OpenAI"
    # The upstream model name; when set it replaces the request's model, as ModelServer.spec.model.
    model: Annotated[str | None, Field(max_length=256)] = None
    base_url: Annotated[str, Field(min_length=1, pattern=r"^https://.+", alias="baseURL")]
    # Skips certificate-chain and host-name checks of the HTTPS connection; never allows plain HTTP.
    insecure_skip_verify: bool = False
    auth: ProviderAuth | None = None
    # Non-sensitive static headers added to every upstream request.
    headers: dict[str, str] | None = None


class ExternalModelProviderStatus(KubeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class ExternalModelProvider(KubeModel):
    """networking.serving.volcano.sh/v1alpha1 ExternalModelProvider."""

    api_version: Literal["networking.serving.volcano.sh/v1alpha1"] = "networking.serving.volcano.sh/v1alpha1"
    kind: Literal["ExternalModelProvider"] = "ExternalModelProvider"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ExternalModelProviderSpec
    status: ExternalModelProviderStatus | None = None
