"""Field errors: where in a manifest something is wrong and why, as `caldera validate` prints them."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError


class FieldError(NamedTuple):
    """One problem: the field path (`spec.template.roles[1].name`) and the reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class Path:
    """Builds field paths the way Kubernetes prints them: `a.b[0].c[key]`."""

    def __init__(self, text: str = "") -> None:
        self.text = text

    def child(self, name: str) -> Path:
        return Path(f"{self.text}.{name}" if self.text else name)

    def index(self, i: int) -> Path:
        return Path(f"{self.text}[{i}]")

    def key(self, key: str) -> Path:
        return Path(f"{self.text}[{key}]")

    def error(self, reason: str) -> FieldError:
        return FieldError(self.text or "<root>", reason)

    def __str__(self) -> str:
        return self.text


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional; return the single remaining type (or the union itself)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _field_for(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (info.alias, name):
            return info.annotation
    return None


def format_loc(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a Kubernetes field path, map keys in brackets."""
    path = Path()
    current: Any = model
    for item in loc:
        current = _unwrap(current) if current is not None else None
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            annotation = _field_for(current, str(item))
            path = path.child(str(item))
            current = annotation
        elif origin is list and isinstance(item, int):
            path = path.index(item)
            current = typing.get_args(current)[0]
        elif origin is dict:
            path = path.key(str(item))
            current = typing.get_args(current)[1]
        else:
            # Scalars and unions of scalars: the rest of the location names union branches.
            break
    return path.text or "<root>"


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required value"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind.endswith("_type") or kind in ("model_type", "dict_type", "list_type"):
        message = f"{message} (got {_json_type(error.get('input'))})"
    return message


def from_validation_error(model: type[BaseModel], exc: ValidationError) -> list[FieldError]:
    """Field errors for every problem pydantic found, one per path (union branches merged)."""
    by_path: dict[str, list[str]] = {}
    for error in exc.errors():
        path = format_loc(model, tuple(error["loc"]))
        reason = _reason(error)
        reasons = by_path.setdefault(path, [])
        if reason not in reasons:
            reasons.append(reason)
    return [FieldError(path, _join(reasons)) for path, reasons in by_path.items()]


_TYPE_REASON = re.compile(r"^Input should be a valid (\w+) \(got (\w+)\)$")


def _join(reasons: list[str]) -> str:
    """Merge union-branch type errors: 'Input should be a valid integer or string (got number)'."""
    matches = [_TYPE_REASON.match(reason) for reason in reasons]
    if len(reasons) > 1 and all(matches):
        wanted = " or ".join(m.group(1) for m in matches if m)
        got = matches[0].group(2) if matches[0] else ""
        return f"Input should be a valid {wanted} (got {got})"
    return " or ".join(reasons)
