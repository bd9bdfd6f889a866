"""Scalar Kubernetes types shared by every API model: quantities, int-or-string, durations.

Each type carries the JSON schema the API server uses for it, so CRDs generated from the
models validate exactly what the models validate.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from caldera.k8s.quantity import QUANTITY_PATTERN, format_quantity, is_quantity

INT_OR_STRING_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}
QUANTITY_SCHEMA: dict[str, Any] = {**INT_OR_STRING_SCHEMA, "pattern": QUANTITY_PATTERN}
PERCENT_PATTERN = r"^[0-9]+%$"
INT_OR_PERCENT_SCHEMA: dict[str, Any] = {**INT_OR_STRING_SCHEMA, "pattern": PERCENT_PATTERN}
# Go's time.ParseDuration grammar (metav1.Duration), without signs.
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+)$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class KubeModel(BaseModel):
    """Base of every API model: camelCase aliases, unknown fields and wrong types rejected."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        strict=True,
        alias_generator=to_camel,
        protected_namespaces=(),
    )

    def to_dict(self) -> dict[str, Any]:
        """The manifest form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _to_quantity(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        return format_quantity(value)
    if isinstance(value, str) and not is_quantity(value):
        raise ValueError(
            f"{value!r} is not a quantity (expected a number with an optional suffix such as 500m, 2Gi, 1e3)"
        )
    return value


def _check_int_or_percent(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} must not be negative")
        return value
    if not re.match(PERCENT_PATTERN, value):
        raise ValueError(f"{value!r} is neither an integer nor a percentage like '25%'")
    return value


def _check_duration(value: str) -> str:
    if not _DURATION_RE.match(value):
        raise ValueError(f"{value!r} is not a duration (expected e.g. 30s, 5m, 1h30m, 100ms)")
    return value


# A resource quantity, stored as its string form ("2", "500m", "16Gi"); ints and floats are accepted.
Quantity = Annotated[str, BeforeValidator(_to_quantity), WithJsonSchema(QUANTITY_SCHEMA)]
# intstr.IntOrString, e.g. a container port number or name.
IntOrString = Annotated[int | str, WithJsonSchema(INT_OR_STRING_SCHEMA)]
# An int-or-string that is a count or a percentage ("25%"), e.g. maxUnavailable and partition.
IntOrPercent = Annotated[int | str, AfterValidator(_check_int_or_percent), WithJsonSchema(INT_OR_PERCENT_SCHEMA)]
# metav1.Duration: "30s", "5m", "1h30m".
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]


def parse_duration(value: str) -> float:
    """Seconds in a Go duration string ("1m30s" -> 90.0)."""
    _check_duration(value)
    if value == "0":
        return 0.0
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART_RE.findall(value))


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """Resolve a count-or-percentage against a total, rounding as Kubernetes does for the field."""
    if isinstance(value, int):
        return value
    _check_int_or_percent(value)
    percent = int(value[:-1])
    scaled = percent * total
    return -(-scaled // 100) if round_up else scaled // 100

# Integer widths, recorded in the schema as the Go types have them.
Int32 = Annotated[int, Field(json_schema_extra={"format": "int32"})]
Int64 = Annotated[int, Field(json_schema_extra={"format": "int64"})]


def cel(rule: str, message: str, **extra: str) -> dict[str, Any]:
    """One x-kubernetes-validations entry (a CEL rule the API server enforces)."""
    return {"rule": rule, "message": message, **extra}
