"""HTTPRoute filters (Gateway API core): compiled per rule, applied to a matched request.

Supported: RequestHeaderModifier (set, add, remove on the request the engine receives),
ResponseHeaderModifier (on the response the client receives), URLRewrite (hostname; path
ReplaceFullPath or ReplacePrefixMatch) and RequestRedirect (scheme, hostname, port, path,
statusCode 301/302). The API lets each type appear at most once per rule and forbids a
redirect together with a rewrite, so the order between them never changes the result.

Anything else (RequestMirror, ExtensionRef, types added later, filters on a backendRef) is
unsupported: the route's status says `Accepted=False` reason `UnsupportedValue` naming it,
and requests the rule matches get a 500 (the spec forbids skipping a filter).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.routing import RouteConfigError

SUPPORTED = ("RequestHeaderModifier", "ResponseHeaderModifier", "URLRewrite", "RequestRedirect")
# Headers the header modifiers may not touch: the router frames requests and responses itself
# (the upstream Host comes from URLRewrite.hostname).
FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                             "te", "trailer", "proxy-connection"})
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")  # an HTTP header name (the CRD's pattern)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_UNSAFE = re.compile(r"[\x00-\x20\x7f?#]")  # would break the request line or the Location header
_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # the CRD's pattern


@dataclass(frozen=True)
class HeaderEdit:
    """A header modifier: `set` replaces, `add` appends to an existing value, `remove` drops."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()  # lower-case

    def apply(self, headers: dict[str, str], original: Mapping[str, str] | None = None) -> None:
        """Edit `headers` (lower-case names) in place; `add` appends to the value in `original`
        (the client's headers, case-insensitive) or in `headers` when there is one."""
        for name in self.remove:
            headers.pop(name, None)
        for name, value in self.set:
            headers[name] = value
        for name, value in self.add:
            before = headers.get(name) or (original.get(name) if original is not None else None)
            headers[name] = f"{before},{value}" if before else value


@dataclass(frozen=True)
class PathModifier:
    type: str  # ReplaceFullPath or ReplacePrefixMatch
    value: str

    def apply(self, path: str, matched_prefix: str | None) -> str:
        if self.type == "ReplaceFullPath" or matched_prefix is None:
            return self.value or "/"
        return replace_prefix(path, matched_prefix, self.value)


def replace_prefix(path: str, prefix: str, replacement: str) -> str:
    """The spec's ReplacePrefixMatch table: prefix '/foo' (a trailing '/' is ignored) on '/foo/bar'
    with '/xyz' or '/xyz/' -> '/xyz/bar', with '/' or '' -> '/bar'; '/foo' -> '/xyz', '/foo/' -> '/xyz/'."""
    prefix = prefix.rstrip("/")
    rest = path[len(prefix):] if path.startswith(prefix) else path
    base = replacement.rstrip("/")
    if not rest:
        return base or "/"
    return base + rest


@dataclass(frozen=True)
class Rewrite:
    hostname: str | None = None
    path: PathModifier | None = None


@dataclass(frozen=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path: PathModifier | None = None
    status: int = 302


@dataclass(frozen=True)
class RuleFilters:
    request_headers: HeaderEdit | None = None
    response_headers: HeaderEdit | None = None
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    unsupported: tuple[str, ...] = ()  # what is not supported, e.g. "filters[1]: RequestMirror"

    @property
    def edits_request(self) -> bool:
        return self.request_headers is not None or self.rewrite is not None


NO_FILTERS = RuleFilters()


def _pairs(items: Any, where: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items or ()):
        name, value = (item.get("name"), item.get("value")) if isinstance(item, Mapping) else (None, None)
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise RouteConfigError(f"{where}[{i}]: name and value are required strings")
        if not _TOKEN.match(name) or _CONTROL.search(value):
            raise RouteConfigError(f"{where}[{i}]: invalid header name {name!r} or value (control characters)")
        out.append((name.lower(), value))
    return tuple(out)


def _header_edit(obj: Any, where: str) -> HeaderEdit:
    if not isinstance(obj, Mapping):
        raise RouteConfigError(f"{where} is required for this filter type")
    remove = obj.get("remove") or ()
    if not all(isinstance(n, str) and n for n in remove):
        raise RouteConfigError(f"{where}.remove: expected header names")
    return HeaderEdit(set=_pairs(obj.get("set"), f"{where}.set"), add=_pairs(obj.get("add"), f"{where}.add"),
                      remove=tuple(n.lower() for n in remove))


def _path(obj: Any, where: str, prefix_match: bool) -> PathModifier | None:
    if obj is None:
        return None
    kind = obj.get("type") if isinstance(obj, Mapping) else None
    if kind == "ReplaceFullPath":
        value = obj.get("replaceFullPath")
    elif kind == "ReplacePrefixMatch":
        if not prefix_match:
            raise RouteConfigError(f"{where}: ReplacePrefixMatch needs every match of the rule to be a PathPrefix")
        value = obj.get("replacePrefixMatch")
    else:
        raise RouteConfigError(f"{where}.type: expected ReplaceFullPath or ReplacePrefixMatch, got {kind!r}")
    if not isinstance(value, str) or (value and not value.startswith("/")) or _UNSAFE.search(value):
        raise RouteConfigError(f"{where}: expected an absolute path without spaces or control characters, "
                               f"got {value!r}")
    return PathModifier(type=kind, value=value)




def _hostname(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HOSTNAME.match(value):
        raise RouteConfigError(f"{where}: expected a DNS hostname, got {value!r}")
    return value


def compile_filters(items: Any, where: str, prefix_match: bool) -> RuleFilters:
    """A rule's `filters`; `prefix_match`: every match of the rule is a PathPrefix (ReplacePrefixMatch)."""
    request_headers = response_headers = None
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    unsupported: list[str] = []
    for i, f in enumerate(items or ()):
        w = f"{where}.filters[{i}]"
        kind = f.get("type") if isinstance(f, Mapping) else None
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            spec_key = "requestHeaderModifier" if kind == "RequestHeaderModifier" else "responseHeaderModifier"
            edit: HeaderEdit | None = _header_edit(f.get(spec_key), f"{w}.{spec_key}")
            assert edit is not None
            framing = sorted(({n for n, _ in edit.set + edit.add} | set(edit.remove)) & FRAMING_HEADERS)
            if framing:  # refused like an unsupported value: never applied half-way
                unsupported.append(f"filters[{i}]: {kind} of {', '.join(framing)}")
                edit = None
            if kind == "RequestHeaderModifier":
                request_headers = edit
            else:
                response_headers = edit
        elif kind == "URLRewrite":
            obj = f.get("urlRewrite") or {}
            rewrite = Rewrite(hostname=_hostname(obj.get("hostname"), f"{w}.urlRewrite.hostname"),
                              path=_path(obj.get("path"), f"{w}.urlRewrite.path", prefix_match))
        elif kind == "RequestRedirect":
            obj = f.get("requestRedirect") or {}
            scheme, port, status = obj.get("scheme"), obj.get("port"), obj.get("statusCode", 302)
            if scheme not in (None, "http", "https"):
                raise RouteConfigError(f"{w}.requestRedirect.scheme: expected http or https, got {scheme!r}")
            if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
                raise RouteConfigError(f"{w}.requestRedirect.port: expected 1..65535, got {port!r}")
            if status not in (301, 302):
                raise RouteConfigError(f"{w}.requestRedirect.statusCode: expected 301 or 302, got {status!r}")
            redirect = Redirect(scheme=scheme, hostname=_hostname(obj.get("hostname"), f"{w}.requestRedirect.hostname"),
                                port=port,
                                path=_path(obj.get("path"), f"{w}.requestRedirect.path", prefix_match),
                                status=status)
        else:
            unsupported.append(f"filters[{i}]: {kind or 'a filter without type'}")
    if redirect is not None and rewrite is not None:
        raise RouteConfigError(f"{where}.filters: RequestRedirect and URLRewrite cannot be combined")
    return RuleFilters(request_headers=request_headers, response_headers=response_headers, rewrite=rewrite,
                       redirect=redirect, unsupported=tuple(unsupported))


DEFAULT_PORTS = {"http": 80, "https": 443}


def redirect_location(redirect: Redirect, scheme: str, host: str, listener_port: int | None, path: str,
                      query: str, matched_prefix: str | None) -> str:
    """The Location of a RequestRedirect, as the spec derives it: without a port, the scheme's
    well-known port when the scheme changes, else the listener's; the port is left out when it is
    the scheme's default."""
    to_scheme = redirect.scheme or scheme
    if redirect.port is not None:
        port: int | None = redirect.port
    elif redirect.scheme is not None:
        port = DEFAULT_PORTS.get(to_scheme, listener_port)
    else:
        port = listener_port
    host = redirect.hostname or host
    netloc = host if port is None or DEFAULT_PORTS.get(to_scheme) == port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" + netloc[len(host):]  # an IPv6 literal
    new_path = redirect.path.apply(path, matched_prefix) if redirect.path is not None else path
    return f"{to_scheme}://{netloc}{new_path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class UpstreamEdit:
    """What a matched rule changes in the request sent to the engine."""

    path: str | None = None
    host: str | None = None
    headers: HeaderEdit | None = None


def upstream_edit(filters: RuleFilters, path: str, matched_prefix: str | None) -> UpstreamEdit | None:
    if not filters.edits_request:
        return None
    rw = filters.rewrite
    new_path = rw.path.apply(path, matched_prefix) if rw is not None and rw.path is not None else None
    return UpstreamEdit(path=new_path, host=rw.hostname if rw is not None else None, headers=filters.request_headers)
