"""`caldera validate -f FILE...`: check manifests offline with the admission webhook's rules.

Each error is printed as `<file>: <kind>/<name>: <field.path>: <reason>`; the exit code is 1
if any manifest of a Caldera kind is invalid. Documents of other kinds are skipped (noted on
stderr), so a file may mix Caldera resources with Namespaces, Queues and the like.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from webhooks.kinds import BY_KIND, RESOURCES
from webhooks.validation import validate_object

_CALDERA_GROUPS = {resource.group for resource in RESOURCES}


@dataclass(frozen=True)
class Document:
    source: str
    index: int
    body: Any

    @property
    def label(self) -> str:
        body = self.body if isinstance(self.body, dict) else {}
        kind = body.get("kind") or "<no kind>"
        name = (body.get("metadata") or {}).get("name") if isinstance(body.get("metadata"), dict) else None
        return f"{kind}/{name or f'<document {self.index}>'}"


@dataclass(frozen=True)
class Finding:
    document: Document
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.document.source}: {self.document.label}: {self.path}: {self.reason}"


def _expand(paths: tuple[str, ...]) -> Iterator[str]:
    for raw in paths:
        path = Path(raw)
        if raw != "-" and path.is_dir():
            yield from sorted(str(p) for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
        else:
            yield raw


def load_documents(source: str, text: str) -> list[Document]:
    """Every non-empty YAML document of a file, in order; the items of a `kind: List` count as documents."""
    documents: list[Document] = []
    for body in yaml.safe_load_all(text):
        if body is None:
            continue
        if isinstance(body, dict) and body.get("kind") == "List" and isinstance(body.get("items"), list):
            documents += [Document(source, len(documents) + i, item) for i, item in enumerate(body["items"])]
        else:
            documents.append(Document(source, len(documents), body))
    return documents


def is_caldera(body: Any) -> bool:
    if not isinstance(body, dict):
        return True  # not a manifest at all: report it
    group = str(body.get("apiVersion") or "").split("/")[0]
    return group in _CALDERA_GROUPS or body.get("kind") in BY_KIND


def check_document(document: Document) -> list[Finding]:
    return [Finding(document, error.path, error.reason) for error in validate_object(document.body)]


def validate_text(source: str, text: str) -> tuple[list[Document], list[Finding]]:
    """The Caldera documents in a file and every problem found in them."""
    try:
        documents = load_documents(source, text)
    except yaml.YAMLError as exc:
        bad = Document(source, 0, None)
        return [bad], [Finding(bad, "<yaml>", str(exc).replace("\n", " "))]
    checked = [document for document in documents if is_caldera(document.body)]
    findings = [finding for document in checked for finding in check_document(document)]
    return checked, findings


@click.command("validate")
@click.option("-f", "--filename", "filenames", multiple=True, required=True,
              help="A manifest file, a directory of them, or - for stdin. Repeatable.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def validate_command(filenames: tuple[str, ...], quiet: bool) -> None:
    """Validate ModelServing, AutoscalingPolicy(Binding), ModelRoute and ModelServer manifests."""
    failed = False
    for source in _expand(filenames):
        if source == "-":
            text = sys.stdin.read()
        else:
            try:
                text = Path(source).read_text()
            except OSError as exc:
                click.echo(f"{source}: cannot read: {exc.strerror}", err=True)
                failed = True
                continue
        documents, findings = validate_text(source, text)
        for finding in findings:
            click.echo(str(finding))
        failed = failed or bool(findings)
        if not quiet:
            bad = {id(finding.document) for finding in findings}
            for document in documents:
                if id(document) not in bad:
                    click.echo(f"{source}: {document.label}: valid")
    if failed:
        raise SystemExit(1)
