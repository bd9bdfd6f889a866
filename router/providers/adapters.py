"""What each provider type accepts and how a request to it is addressed and authenticated.

Pure functions, shared by the router (building upstream requests, status conditions) and the
admission webhook (the same rules reject a bad manifest before the router ever sees it).
Behaviour follows Kthena's `pkg/kthena-router/providers`: OpenAI providers take the OpenAI
paths, Anthropic providers take `/v1/messages` natively; a base URL with a path replaces the
request's `/v1` prefix (OpenAI) or its own trailing `/v1` stands for it (Anthropic).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses"})
ANTHROPIC_MESSAGES = "/v1/messages"
CHAT_COMPLETIONS = "/v1/chat/completions"

DEFAULT_SCHEME = {"OpenAI": "Bearer", "Anthropic": "APIKey"}

# Static headers may not override credentials, routing or hop-by-hop behaviour.
RESERVED_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "host", "content-length", "connection",
    "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "trailer", "te",
})
# Client headers passed on to a provider; everything else (the client's own Authorization above
# all) stays at the router.
FORWARDED_HEADERS = frozenset({
    "content-type", "accept", "x-request-id", "traceparent", "tracestate", "baggage", "x-b3-traceid",
    "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
})
ANTHROPIC_FORWARDED_HEADERS = frozenset({"anthropic-version", "anthropic-beta"})
ANTHROPIC_VERSION = "2023-06-01"

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field-name


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be a provider base URL, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme != "https" or not parts.hostname:
        return "baseURL must use https:// and name a host"
    if parts.username is not None or parts.query or parts.fragment or url.endswith(("?", "#")):
        return "baseURL must not contain userinfo, query, or fragment"
    return None


def header_problems(headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """(header name, reason) for every static header that may not be sent."""
    problems = []
    for name, value in (headers or {}).items():
        if not _TOKEN.match(name):
            problems.append((name, "header name is invalid"))
        elif name.lower() in RESERVED_HEADERS:
            problems.append((name, "header is reserved and cannot be configured as a static header"))
        elif not header_value_ok(value):
            problems.append((name, "header value must not contain control characters such as CR or LF"))
    return problems


def header_value_ok(value: str) -> bool:
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value)


def supports(provider_type: str, path: str) -> bool:
    """Whether a provider of this type serves the request path (chat is translated for Anthropic)."""
    if provider_type == "Anthropic":
        return path in (ANTHROPIC_MESSAGES, CHAT_COMPLETIONS)
    return path in OPENAI_PATHS


def upstream_url(provider_type: str, base_url: str, path: str, query: str = "") -> str:
    """The provider URL for a request path: `https://host/v1/chat/completions`, or for a base URL
    with a path (`https://host/api/v3`) that path instead of `/v1` (OpenAI; Anthropic only when
    the base URL itself ends in `/v1`)."""
    parts = urlsplit(base_url)
    base_path = parts.path.rstrip("/")
    suffix = path.lstrip("/")
    trim = bool(base_path) if provider_type == "OpenAI" else base_path.endswith("/v1")
    if trim:
        suffix = suffix[3:] if suffix.startswith("v1/") else ("" if suffix == "v1" else suffix)
    full = f"{base_path}/{suffix}" if suffix else (base_path or "/")
    netloc = parts.netloc
    return f"https://{netloc}{full}" + (f"?{query}" if query else "")


def auth_headers(provider_type: str, scheme: str | None, credential: str | None) -> dict[str, str]:
    """The credential as the provider expects it: `Authorization: Bearer` or `x-api-key`."""
    if not credential:
        return {}
    if (scheme or DEFAULT_SCHEME[provider_type]) == "Bearer":
        return {"authorization": f"Bearer {credential}"}
    return {"x-api-key": credential}


def forwarded_headers(provider_type: str, client_headers: Mapping[str, str]) -> dict[str, str]:
    """The client headers a provider may see."""
    allowed = FORWARDED_HEADERS | (ANTHROPIC_FORWARDED_HEADERS if provider_type == "Anthropic" else frozenset())
    return {name.lower(): value for name, value in client_headers.items() if name.lower() in allowed}


# Where the text of a /v1/responses or /v1/messages request lives (instructions, input items,
# system, messages and their content parts, tool results); images and tool schemas are left out.
_TEXT_KEYS = frozenset({"instructions", "input", "system", "messages", "content", "text", "output"})


def prompt_text(body: Mapping[str, Any]) -> str:
    """The prompt text of a provider-native request, for the token estimate a route's input
    limit admits on (as `prompt_text` of a chat request). Never raises: the body is sent as is."""
    parts: list[str] = []

    def walk(value: Any, depth: int) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif depth < 8 and isinstance(value, list):
            for item in value:
                walk(item, depth + 1)
        elif depth < 8 and isinstance(value, Mapping):
            for key, item in value.items():
                if key in _TEXT_KEYS:
                    walk(item, depth + 1)

    walk(body, 0)
    return "\n".join(parts)
