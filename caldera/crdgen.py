"""Generate CustomResourceDefinitions from the API models (`caldera crds generate [--check]`).

The pydantic models are the single source of truth. Their JSON schema is rewritten into a
structural OpenAPI v3 schema: references inlined, optional unions collapsed, constraints,
enums, defaults and CEL rules (`x-kubernetes-validations`) kept, int-or-string and
quantities marked `x-kubernetes-int-or-string`.
"""

from __future__ import annotations

import difflib
import functools
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from webhooks.kinds import RESOURCES, Resource

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "crds"
# Keys of a pydantic JSON schema that carry nothing for the API server.
_DROPPED = {"title", "additionalProperties", "$defs", "examples"}
# Metadata of embedded objects (ephemeral volume claim templates) keeps what a template can set.
_EMBEDDED_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


class SchemaError(ValueError):
    """A model uses a construct that has no structural OpenAPI v3 form."""


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if key == "x-kubernetes-validations" and key in merged:
            merged[key] = [*merged[key], *value]
        elif key == "description" and key in merged:
            continue
        else:
            merged[key] = value
    return merged


def structural(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Rewrite one pydantic JSON-schema node (and its children) into structural form."""
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name == "ObjectMeta":
            return dict(_EMBEDDED_METADATA)
        node = _merge(defs[name], node)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [branch for branch in node.pop("anyOf") if branch.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaError(f"{path or '<root>'}: a union of {branches} has no structural schema")
        if node.get("default", 0) is None:
            node.pop("default")
        return structural(_merge(branches[0], node), defs, path)
    if node.get("default", 0) is None:
        node.pop("default")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "description" and value.startswith("core/v1 "):
            continue  # generated Kubernetes types: kubectl explain pod has the real text
        out[key] = value
    additional = node.get("additionalProperties")
    if "properties" in node:
        out["properties"] = {
            name: structural(child, defs, f"{path}.{name}") for name, child in node["properties"].items()
        }
        if not out["properties"]:
            del out["properties"]
    elif isinstance(additional, dict):
        out["additionalProperties"] = structural(additional, defs, f"{path}[*]")
    elif additional is True:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = structural(node["items"], defs, f"{path}[]")
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out and "properties" not in out:
        return out
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path or '<root>'}: no type in {node}")
    return out


_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_FORBIDDEN = {"$ref", "definitions", "$defs", "id", "additionalItems", "patternProperties", "dependencies", "const"}
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_ENUM_TYPES: dict[str, type | tuple[type, ...]] = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
# Keys a schema inside allOf/anyOf/oneOf/not may not carry (structural rule 3).
_NOT_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable", "properties", "items"}


def structural_violations(schema: Any, path: str = "") -> list[str]:
    """Why a CRD schema is not structural (the API server's rules); empty when it is."""
    where = path or "<root>"
    if not isinstance(schema, dict):
        return [f"{where}: a schema must be a mapping"]
    problems = [f"{where}: {key} is not allowed in a CRD schema" for key in _FORBIDDEN & schema.keys()]
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    kind = schema.get("type")
    if kind is None and not (int_or_string or preserve):
        problems.append(f"{where}: type is missing")
    if kind is not None and kind not in _TYPES:
        problems.append(f"{where}: unknown type {kind!r}")
    if int_or_string and kind is not None:
        problems.append(f"{where}: x-kubernetes-int-or-string must not have a type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if isinstance(schema.get("additionalProperties"), bool):
        problems.append(f"{where}: additionalProperties must be a schema, not a boolean")
    if ("properties" in schema or "additionalProperties" in schema) and kind != "object" and not preserve:
        problems.append(f"{where}: properties need type: object")
    if "items" in schema and kind != "array":
        problems.append(f"{where}: items need type: array")
    if kind == "array" and not isinstance(schema.get("items"), dict):
        problems.append(f"{where}: an array needs one items schema")
    for name in schema.get("required", []):
        if name not in schema.get("properties", {}):
            problems.append(f"{where}: required field {name!r} is not among the properties")
    for value in schema.get("enum", []):
        expected = _ENUM_TYPES.get(kind or "")
        if expected is not None and not isinstance(value, expected):
            problems.append(f"{where}: enum value {value!r} is not a {kind}")
    for junctor in _JUNCTORS:
        if junctor not in schema:
            continue
        branches = schema[junctor] if isinstance(schema[junctor], list) else [schema[junctor]]
        if int_or_string and junctor == "anyOf" and branches == _INT_OR_STRING:
            continue
        for i, branch in enumerate(branches):
            for key in _NOT_IN_JUNCTORS & set(branch):
                problems.append(f"{where}.{junctor}[{i}]: {key} is not allowed inside {junctor}")
    for name, child in schema.get("properties", {}).items():
        problems += structural_violations(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_violations(schema["additionalProperties"], f"{where}[*]")
    if isinstance(schema.get("items"), dict):
        problems += structural_violations(schema["items"], f"{where}[]")
    return problems


def openapi_schema(resource: Resource) -> dict[str, Any]:
    """The structural openAPIV3Schema of one resource."""
    raw = resource.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    properties = raw["properties"]
    spec = structural(properties["spec"], defs, "spec")
    status = structural(properties["status"], defs, "status")
    description = (resource.model.__doc__ or "").strip().splitlines()[0]
    schema = {
        "description": description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    problems = structural_violations(schema)
    if problems:
        raise SchemaError(f"{resource.kind}: the generated schema is not structural: " + "; ".join(problems[:10]))
    return schema


def crd(resource: Resource) -> dict[str, Any]:
    """The CustomResourceDefinition of one resource, as a plain dict."""
    subresources: dict[str, Any] = {"status": {}}
    if resource.scale is not None:
        spec_path, status_path, selector_path = resource.scale
        subresources["scale"] = {
            "specReplicasPath": spec_path,
            "statusReplicasPath": status_path,
            "labelSelectorPath": selector_path,
        }
    names: dict[str, Any] = {
        "kind": resource.kind,
        "listKind": f"{resource.kind}List",
        "plural": resource.plural,
        "singular": resource.singular,
    }
    if resource.short_names:
        names["shortNames"] = list(resource.short_names)
    if resource.categories:
        names["categories"] = list(resource.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.crd_name,
            "annotations": {"caldera.dev/generated-by": "caldera crds generate"},
        },
        "spec": {
            "group": resource.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": resource.version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(resource)},
                    "subresources": subresources,
                    "additionalPrinterColumns": [column.to_dict() for column in resource.printer_columns],
                }
            ],
        },
    }


def file_name(resource: Resource) -> str:
    return f"{resource.group}_{resource.plural}.yaml"


_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _NoAliasDumper(_BaseDumper):  # type: ignore[misc]
    """Spell out repeated sub-schemas instead of YAML anchors, so the files read plainly."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(resource: Resource) -> str:
    header = "# GENERATED by `caldera crds generate` from the API models. Do not edit.\n"
    body = yaml.dump(crd(resource), Dumper=_NoAliasDumper, sort_keys=False, width=120, allow_unicode=True)
    return header + body


@functools.cache
def _generated() -> tuple[tuple[str, str], ...]:
    return tuple((file_name(resource), render(resource)) for resource in RESOURCES)


def generate_all() -> dict[str, str]:
    """File name -> YAML text for every CRD."""
    return dict(_generated())


def stale_files(output_dir: Path) -> dict[str, str]:
    """File name -> unified diff for every CRD whose committed YAML differs from the models."""
    stale: dict[str, str] = {}
    for name, text in generate_all().items():
        path = output_dir / name
        current = path.read_text() if path.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), str(path), f"{name} (generated)"
            )
            stale[name] = "".join(diff)
    return stale


@click.group("crds")
def crds_command() -> None:
    """CustomResourceDefinitions generated from the API models."""


@crds_command.command("generate")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUTPUT,
              show_default=True, help="Where the CRD YAML files live.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the files differ from the models.")
def generate_command(output_dir: Path, check: bool) -> None:
    """Write one CRD YAML file per resource (or, with --check, verify they are current)."""
    if check:
        stale = stale_files(output_dir)
        for name, diff in stale.items():
            click.echo(f"{output_dir / name}: differs from the models", err=True)
            sys.stderr.write(diff[:4000])
        if stale:
            click.echo("run `caldera crds generate` and commit crds/", err=True)
            raise SystemExit(1)
        click.echo(f"{len(RESOURCES)} CRDs in {output_dir} match the models")
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generate_all().items():
        (output_dir / name).write_text(text)
        click.echo(f"wrote {output_dir / name}")
