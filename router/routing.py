"""ModelRoute matching: rules in order, weighted targets (canary), model rewrite, LoRA.

Pure functions over compiled route tables. Inputs are the ModelRoute/ModelServer objects as
dicts (camelCase, as stored in Kubernetes or written in the static YAML); `compile_*`
validates them into small frozen dataclasses once, so matching a request is cheap.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import xxhash

from router.providers.provider import Provider
from router.request import RequestError


class RouteConfigError(ValueError):
    """A ModelRoute or ModelServer that cannot be used, naming the object and field."""


@dataclass(frozen=True)
class StringMatch:
    exact: str | None = None
    prefix: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.exact is not None:
            return value == self.exact
        if self.prefix is not None:
            return value.startswith(self.prefix)
        if self.regex is not None:
            return self.regex.fullmatch(value) is not None
        return False


@dataclass(frozen=True)
class Target:
    server: str  # ModelServer name, in the route's namespace ("" for a provider)
    weight: int
    provider: str = ""  # ExternalModelProvider name, in the route's namespace


@dataclass(frozen=True)
class Rule:
    name: str
    headers: tuple[tuple[str, StringMatch], ...]
    uri: StringMatch | None
    body_model: str | None
    targets: tuple[Target, ...]
    total_weight: int

    def matches(self, model: str, path: str, headers: Mapping[str, str]) -> bool:
        if self.body_model is not None and self.body_model != model:
            return False
        if self.uri is not None and not self.uri.matches(path):
            return False
        if not self.headers:
            return True
        return all(m.matches(headers.get(name)) for name, m in self.headers)


@dataclass(frozen=True)
class Route:
    namespace: str
    name: str
    created: str
    model_name: str
    lora_adapters: tuple[str, ...]
    rules: tuple[Rule, ...]
    rate_limit: Mapping[str, Any] | None = None
    has_parent_refs: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PDGroup:
    group_key: str
    prefill_labels: tuple[tuple[str, str], ...]
    decode_labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Server:
    namespace: str
    name: str
    model: str | None
    engine: str  # "vLLM" | "SGLang"
    match_labels: tuple[tuple[str, str], ...]
    pd_group: PDGroup | None
    port: int | None
    kv_connector: str | None
    timeout_s: float | None = None
    retry_attempts: int = 0
    retry_interval_s: float = 0.1

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        return namespace == self.namespace and all(labels.get(k) == v for k, v in self.match_labels)

    def role_of(self, labels: Mapping[str, str]) -> str | None:
        """'prefill', 'decode' or None for a pod of this server (None when not P/D)."""
        if self.pd_group is None:
            return None
        if all(labels.get(k) == v for k, v in self.pd_group.prefill_labels):
            return "prefill"
        if all(labels.get(k) == v for k, v in self.pd_group.decode_labels):
            return "decode"
        return None


def parse_duration(value: Any, where: str) -> float:
    """Kubernetes metav1.Duration strings ('30s', '1m30s', '100ms') or numbers of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise RouteConfigError(f"{where}: expected a duration like '30s', got {value!r}")
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", value):
        total += float(number) * units[unit]
    if not re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s))+", value):
        raise RouteConfigError(f"{where}: expected a duration like '30s', got {value!r}")
    return total


def _string_match(obj: Any, where: str) -> StringMatch:
    if not isinstance(obj, Mapping):
        raise RouteConfigError(f"{where}: expected an object with exact, prefix or regex")
    set_keys = [k for k in ("exact", "prefix", "regex") if obj.get(k) is not None]
    if len(set_keys) != 1:
        raise RouteConfigError(f"{where}: exactly one of exact, prefix, regex must be set, got {set_keys}")
    key = set_keys[0]
    value = obj[key]
    if not isinstance(value, str):
        raise RouteConfigError(f"{where}.{key}: expected a string, got {value!r}")
    if key == "regex":
        try:
            return StringMatch(regex=re.compile(value))
        except re.error as exc:
            raise RouteConfigError(f"{where}.regex: invalid regular expression: {exc}") from None
    return StringMatch(exact=value) if key == "exact" else StringMatch(prefix=value)


def _meta(obj: Mapping[str, Any], kind: str) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise RouteConfigError(f"{kind}: metadata.name is required")
    return meta.get("namespace") or "default", name, str(meta.get("creationTimestamp") or "")


def compile_route(obj: Mapping[str, Any]) -> Route:
    namespace, name, created = _meta(obj, "ModelRoute")
    where = f"ModelRoute {namespace}/{name}"
    spec = obj.get("spec") or {}
    model_name = spec.get("modelName") or ""
    loras = tuple(spec.get("loraAdapters") or ())
    if not model_name and not loras:
        raise RouteConfigError(f"{where}: spec.modelName is required unless spec.loraAdapters is set")
    rules: list[Rule] = []
    for i, rule in enumerate(spec.get("rules") or ()):
        rwhere = f"{where}: spec.rules[{i}]"
        match = rule.get("modelMatch") or {}
        headers = tuple(
            (str(h).lower(), _string_match(m, f"{rwhere}.modelMatch.headers.{h}"))
            for h, m in (match.get("headers") or {}).items()
        )
        uri = _string_match(match["uri"], f"{rwhere}.modelMatch.uri") if match.get("uri") else None
        body_model = (match.get("body") or {}).get("model")
        raw_targets = rule.get("targetModels") or []
        if not raw_targets:
            raise RouteConfigError(f"{rwhere}.targetModels: at least one target is required")
        weights_set = [t.get("weight") is not None for t in raw_targets]
        if any(weights_set) and not all(weights_set):
            raise RouteConfigError(f"{rwhere}.targetModels: either every target sets a weight or none does")
        targets: list[Target] = []
        for j, t in enumerate(raw_targets):
            server, provider = t.get("modelServerName") or "", t.get("externalModelProviderName") or ""
            if not isinstance(server, str) or not isinstance(provider, str) or bool(server) == bool(provider):
                raise RouteConfigError(f"{rwhere}.targetModels[{j}]: exactly one of modelServerName or "
                                       "externalModelProviderName is required")
            weight = t.get("weight", 100)
            weight = 100 if weight is None else weight
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                raise RouteConfigError(f"{rwhere}.targetModels[{j}].weight: expected 0..100, got {weight!r}")
            targets.append(Target(server=server, weight=weight, provider=provider))
        total = sum(t.weight for t in targets)
        if total == 0:
            raise RouteConfigError(f"{rwhere}.targetModels: weights sum to 0")
        rules.append(Rule(name=rule.get("name") or f"rule-{i}", headers=headers, uri=uri,
                          body_model=body_model, targets=tuple(targets), total_weight=total))
    if not rules:
        raise RouteConfigError(f"{where}: spec.rules must have at least one rule")
    return Route(namespace=namespace, name=name, created=created, model_name=model_name,
                 lora_adapters=loras, rules=tuple(rules), rate_limit=spec.get("rateLimit"),
                 has_parent_refs=bool(spec.get("parentRefs")))


def compile_server(obj: Mapping[str, Any]) -> Server:
    namespace, name, _ = _meta(obj, "ModelServer")
    where = f"ModelServer {namespace}/{name}"
    spec = obj.get("spec") or {}
    engine = spec.get("inferenceEngine") or "vLLM"
    if engine not in ("vLLM", "SGLang"):
        raise RouteConfigError(f"{where}: spec.inferenceEngine must be vLLM or SGLang, got {engine!r}")
    selector = spec.get("workloadSelector") or {}
    labels = tuple(sorted((selector.get("matchLabels") or {}).items()))
    pd = selector.get("pdGroup")
    pd_group = None
    if pd:
        if not pd.get("groupKey"):
            raise RouteConfigError(f"{where}: spec.workloadSelector.pdGroup.groupKey is required")
        pd_group = PDGroup(group_key=pd["groupKey"],
                           prefill_labels=tuple(sorted((pd.get("prefillLabels") or {}).items())),
                           decode_labels=tuple(sorted((pd.get("decodeLabels") or {}).items())))
    port_spec = spec.get("workloadPort") or {}
    port = port_spec.get("port")
    traffic = spec.get("trafficPolicy") or {}
    retry = traffic.get("retry") or {}
    timeout = traffic.get("timeout")
    return Server(
        namespace=namespace, name=name, model=spec.get("model"), engine=engine, match_labels=labels,
        pd_group=pd_group, port=int(port) if port else None,
        kv_connector=(spec.get("kvConnector") or {}).get("type"),
        timeout_s=parse_duration(timeout, f"{where}: spec.trafficPolicy.timeout") if timeout else None,
        retry_attempts=int(retry.get("attempts") or 0),
        retry_interval_s=parse_duration(retry["retryInterval"], f"{where}: spec.trafficPolicy.retry.retryInterval")
        if retry.get("retryInterval") else 0.1,
    )


@dataclass
class RouteTable:
    """Routes indexed by model name and LoRA adapter, each list oldest first."""

    routes: list[Route] = field(default_factory=list)
    servers: dict[str, Server] = field(default_factory=dict)
    by_model: dict[str, list[Route]] = field(default_factory=dict)
    by_lora: dict[str, list[Route]] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)

    @classmethod
    def build(cls, routes: Iterable[Route], servers: Iterable[Server],
              providers: Iterable[Provider] = ()) -> RouteTable:
        # Without Gateway API support, routes attached to a Gateway (parentRefs) are skipped, as
        # Kthena's router does in its non-Gateway mode.
        ordered = sorted((r for r in routes if not r.has_parent_refs), key=lambda r: (r.created, r.namespace, r.name))
        table = cls(routes=ordered, servers={s.key: s for s in servers}, providers={p.key: p for p in providers})
        for route in ordered:
            if route.model_name:
                table.by_model.setdefault(route.model_name, []).append(route)
            for lora in route.lora_adapters:
                table.by_lora.setdefault(lora, []).append(route)
        return table

    def model_names(self) -> list[str]:
        return sorted(set(self.by_model) | set(self.by_lora))


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    rule: Rule
    server: Server
    upstream_model: str  # the model name sent to the engine
    lora: str | None  # adapter name when the request is for a LoRA adapter


@dataclass(frozen=True)
class ProviderDecision:
    """The request goes to an ExternalModelProvider outside the cluster, not to engine pods."""

    route: Route
    rule: Rule
    provider: Provider
    upstream_model: str


def split_point(key: str | None, salt: str, rng: random.Random | None = None) -> float:
    """A number in [0, 1) that picks the canary side: stable for a key, uniform otherwise."""
    if key is None:
        return (rng or random).random()
    return xxhash.xxh64_intdigest(key.encode(), seed=xxhash.xxh32_intdigest(salt.encode())) / 2.0**64


def pick_target(rule: Rule, point: float) -> Target:
    threshold = point * rule.total_weight
    acc = 0
    for target in rule.targets:
        acc += target.weight
        if threshold < acc:
            return target
    return rule.targets[-1]


def match(table: RouteTable, model: str, path: str, headers: Mapping[str, str],
          split_key: str | None = None, rng: random.Random | None = None) -> RouteDecision | ProviderDecision:
    """The first matching rule of the oldest route for the model, then a weighted target.

    `headers` must have lower-case names. `split_key` pins the canary side (session/user);
    without it the side is random per request. Raises RequestError(404) when nothing matches.
    """
    lora = model if model in table.by_lora else None
    candidates = table.by_lora.get(model) if lora else table.by_model.get(model)
    if not candidates:
        raise RequestError(404, f"The model '{model}' does not exist.", param="model",
                           code="model_not_found")
    for route in candidates:
        for rule in route.rules:
            if not rule.matches(model, path, headers):
                continue
            target = pick_target(rule, split_point(split_key, route.key, rng))
            if target.provider:
                provider = table.providers.get(f"{route.namespace}/{target.provider}")
                if provider is None:
                    break  # as an unresolved ModelServer: try the next route
                return ProviderDecision(route=route, rule=rule, provider=provider,
                                        upstream_model=provider.upstream_model(model))
            server = table.servers.get(f"{route.namespace}/{target.server}")
            if server is None:
                break  # destination does not resolve: try the next route, as Kthena does
            upstream = model if lora or not server.model else server.model
            return RouteDecision(route=route, rule=rule, server=server, upstream_model=upstream, lora=lora)
    raise RequestError(404, f"no ModelRoute rule matches model '{model}' with these headers",
                       param="model", code="route_not_found")
