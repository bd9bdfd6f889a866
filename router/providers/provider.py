"""An ExternalModelProvider compiled with its credential, and the status conditions that say
whether the router can use it. Pure: the inputs are the object and the Secrets as dicts.

A Secret counts only if it carries the credential label: the router lists Secrets with that
label selector, and static mode applies the same rule, so an unlabelled Secret is as good as
absent (Kthena's behaviour; its message names the label so the fix is obvious).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from router.providers import adapters
from router.providers.api import CREDENTIAL_LABEL, CREDENTIAL_LABEL_VALUE, CREDENTIALS_RESOLVED, READY
from router.providers.api import ExternalModelProvider as ProviderModel


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False"
    reason: str
    message: str


@dataclass(frozen=True)
class Provider:
    """What the proxy needs; `ready` is False when a request cannot be sent (see `conditions`)."""

    namespace: str
    name: str
    provider_type: str
    base_url: str
    model: str | None = None
    insecure_skip_verify: bool = False
    scheme: str | None = None
    credential: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    generation: int | None = None
    conditions: tuple[Condition, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ready(self) -> bool:
        return all(c.status == "True" for c in self.conditions)

    @property
    def not_ready_reason(self) -> str:
        return "; ".join(f"{c.type}: {c.message}" for c in self.conditions if c.status != "True")

    def upstream_model(self, request_model: str) -> str:
        return self.model or request_model


def is_credential_secret(secret: Mapping[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return labels.get(CREDENTIAL_LABEL) == CREDENTIAL_LABEL_VALUE


def normalize_credential(raw: bytes) -> str:
    """The credential with surrounding whitespace removed; ValueError if it cannot be a header value."""
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("provider credential is not UTF-8 text") from None
    if not token:
        raise ValueError("provider credential is empty after trimming whitespace")
    if not adapters.header_value_ok(token):
        raise ValueError("provider credential contains characters not allowed in an HTTP header")
    return token


def _secret_value(secret: Mapping[str, Any], key: str) -> bytes | None:
    data = secret.get("data") or {}
    if key in data and data[key] is not None:
        try:
            return base64.b64decode(data[key], validate=True)
        except (binascii.Error, ValueError):
            return b""
    string_data = secret.get("stringData") or {}  # static mode files may write plain text
    if key in string_data and string_data[key] is not None:
        return str(string_data[key]).encode()
    return None


def compile_provider(obj: Mapping[str, Any], secrets: Mapping[str, Mapping[str, Any]]) -> Provider:
    """Compile one provider against the labelled Secrets (`namespace/name` -> Secret dict).

    Never raises: an unusable provider comes back with `ready` False and conditions saying why.
    """
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace") or "default", str(meta.get("name") or "")
    generation = meta.get("generation")
    try:
        model = ProviderModel.model_validate(obj)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
        spec = obj.get("spec") or {}
        invalid = Condition(READY, "False", "ConfigurationInvalid", f"External provider configuration is invalid: "
                            f"{detail}")
        return Provider(namespace, name, str(spec.get("providerType") or "OpenAI"), str(spec.get("baseURL") or ""),
                        generation=generation,
                        conditions=(Condition(CREDENTIALS_RESOLVED, "False", "ConfigurationInvalid", detail), invalid))
    spec = model.spec
    credential: str | None = None
    if spec.auth is None:
        cred = Condition(CREDENTIALS_RESOLVED, "True", "CredentialNotRequired", "No credential is configured")
    else:
        ref = spec.auth.secret_ref
        secret = secrets.get(f"{namespace}/{ref.name}")
        if secret is None or not is_credential_secret(secret):
            cred = Condition(CREDENTIALS_RESOLVED, "False", "CredentialNotFound",
                             f"Credential Secret {ref.name!r} is not found or does not have label "
                             f"{CREDENTIAL_LABEL}={CREDENTIAL_LABEL_VALUE}")
        else:
            raw = _secret_value(secret, ref.key)
            if not raw:
                cred = Condition(CREDENTIALS_RESOLVED, "False", "CredentialKeyNotFound",
                                 f"Credential Secret {ref.name!r} has no key {ref.key!r}")
            else:
                try:
                    credential = normalize_credential(raw)
                    cred = Condition(CREDENTIALS_RESOLVED, "True", "CredentialResolved",
                                     "Credential Secret and key are available")
                except ValueError as exc:
                    cred = Condition(CREDENTIALS_RESOLVED, "False", "CredentialInvalid", str(exc))
    problems = [p for p in [adapters.base_url_problem(spec.base_url)] if p]
    problems += [f"header {n!r}: {why}" for n, why in adapters.header_problems(spec.headers)]
    if problems:
        ready = Condition(READY, "False", "ConfigurationInvalid",
                          "External provider configuration is invalid: " + "; ".join(problems))
    elif cred.status != "True":
        ready = Condition(READY, "False", cred.reason, cred.message)
    else:
        ready = Condition(READY, "True", "Ready", "External provider configuration is ready")
    return Provider(
        namespace=namespace, name=name, provider_type=spec.provider_type, base_url=spec.base_url,
        model=spec.model or None, insecure_skip_verify=spec.insecure_skip_verify,
        scheme=spec.auth.scheme if spec.auth else None, credential=credential if ready.status == "True" else None,
        headers=tuple(sorted((spec.headers or {}).items())), generation=generation, conditions=(cred, ready))


def secret_key_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


def compile_providers(objects: Iterable[Mapping[str, Any]], secrets: Iterable[Mapping[str, Any]]) -> list[Provider]:
    """Every provider compiled against the labelled Secrets among `secrets`."""
    labelled = {secret_key_of(s): s for s in secrets if is_credential_secret(s)}
    return [compile_provider(obj, labelled) for obj in objects]
