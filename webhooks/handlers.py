"""kopf admission handlers: validation and defaulting of every Caldera kind.

Importing this module registers the handlers; the controller process serves them through
kopf's admission server (see `caldera/controller.py`). The rules themselves are the pure
functions of `webhooks.validation` and `webhooks.defaulting`.

Note that the API server prunes unknown fields before admission; with `fieldValidation=Strict`
(kubectl's default) it rejects them itself, so this webhook sees only known fields.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from webhooks.defaulting import apply_defaults, defaults_for
from webhooks.errors import FieldError
from webhooks.kinds import RESOURCES, Resource
from webhooks.validation import validate_object, validate_transition

logger = logging.getLogger(__name__)


def admission_message(errors: list[FieldError]) -> str:
    return "validation failed: " + "; ".join(str(error) for error in errors)


def check(body: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    errors = validate_object(body)
    if old:
        errors += validate_transition(old, body)
    return errors


def _fill_defaults(body: Any) -> None:
    apply_defaults(body)


def _register(resource: Resource) -> None:
    group, version, plural = resource.group, resource.version, resource.plural

    @kopf.on.validate(group, version, plural, id=f"validate-{plural}", operations=["CREATE", "UPDATE"])
    def validate(*, body: kopf.Body, old: kopf.Body | None = None, **_: Any) -> None:
        errors = check(dict(body), dict(old) if old else None)
        if errors:
            logger.info("rejected %s %s: %s", resource.kind, body.get("metadata", {}).get("name"), errors)
            raise kopf.AdmissionError(admission_message(errors), code=422)

    @kopf.on.mutate(group, version, plural, id=f"default-{plural}", operations=["CREATE", "UPDATE"])
    def default(*, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        added = defaults_for(dict(body))
        if added:
            logger.debug("defaulting %s %s: %s", resource.kind, body.get("metadata", {}).get("name"), added)
            patch.fns.append(_fill_defaults)


for _resource in RESOURCES:
    _register(_resource)
