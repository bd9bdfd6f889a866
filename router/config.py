"""Typed router configuration, validated at start.

Static mode reads ModelRoutes, ModelServers and endpoints from one YAML file; cluster mode
reads them from Kubernetes and uses the rest of this file (profiles, limits, intervals).
Profiles wire filters -> weighted scorers -> picker by name, as llm-d's EndpointPickerConfig.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router import filters as flt
from router import pickers as pk
from router.cost_model import CostModelScorer
from router.gateway.settings import GatewaySettings
from router.limits.auth import AuthConfig
from router.limits.settings import FairnessConfig
from router.resilience.settings import ResilienceConfig
from router.scheduling import Filter, Picker, Profile, Scorer, WeightedScorer
from router.scorers.active_request import ActiveRequestScorer
from router.scorers.cache_aware import CacheAwareScorer
from router.scorers.inflight import InflightScorer
from router.scorers.kv_events import KVEventsScorer
from router.scorers.kv_usage import KVUsageScorer
from router.scorers.latency import LatencyScorer
from router.scorers.least_kv_cache import LeastGPUCacheScorer, LeastKVCacheScorer
from router.scorers.least_latency import LeastLatencyScorer
from router.scorers.least_utilization import LeastBusyTimeScorer, LeastUtilizationScorer
from router.scorers.load_aware import LoadAwareScorer
from router.scorers.lora_affinity import LoraAffinityScorer
from router.scorers.no_hit_lru import NoHitLRUScorer
from router.scorers.prefix_cache import PrefixCacheScorer
from router.scorers.queue import QueueScorer
from router.scorers.running import RunningScorer
from router.scorers.throughput import ThroughputScorer
from router.scorers.token_load import TokenLoadScorer


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PluginRef(_Model):
    type: str
    weight: float = Field(1.0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)


class ProfileConfig(_Model):
    filters: list[PluginRef] = Field(default_factory=list)
    scorers: list[PluginRef] = Field(default_factory=list)
    picker: PluginRef = Field(default_factory=lambda: PluginRef(type="max-score"))


class PrefixIndexConfig(_Model):
    block_tokens: int = Field(16, ge=1, alias="blockTokens")
    max_blocks: int = Field(256, ge=1, alias="maxBlocks")
    lru_capacity: int = Field(31_250, ge=1, alias="lruCapacity")


class PDConfig(_Model):
    # Skip the prefill pod when fewer uncached prompt tokens than this remain (0 = never skip).
    skip_prefill_below_tokens: int = Field(0, ge=0, alias="skipPrefillBelowTokens")
    sglang_bootstrap_port: int = Field(8998, ge=1, le=65535, alias="sglangBootstrapPort")


class ProvidersConfig(_Model):
    """ExternalModelProvider targets. Cluster mode watches the providers and the Secrets labelled
    as their credentials only when enabled (the Helm chart grants that read access only then)."""

    enabled: bool = False
    ca_file: str | None = Field(None, alias="caFile")  # extra CA bundle for provider TLS (private CA, proxy)


class StaticEndpoint(_Model):
    name: str
    address: str = Field(pattern=r"^[^:/\s]+:\d+$")
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    kv_events: str | None = Field(None, alias="kvEvents")
    kv_replay: str | None = Field(None, alias="kvReplay")
    bootstrap_port: int | None = Field(None, alias="bootstrapPort")


class RouterConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    profile: str = "default"
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    metrics_interval_s: float = Field(0.2, gt=0, alias="metricsInterval")
    models_interval_s: float = Field(5.0, gt=0, alias="modelsInterval")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, alias="maxBodyBytes")
    upstream_timeout_s: float = Field(600.0, gt=0, alias="upstreamTimeout")
    prefix_index: PrefixIndexConfig = Field(default_factory=PrefixIndexConfig, alias="prefixIndex")
    tokenizer: str | None = None  # "module:attr" returning a tokenizer, e.g. "enginesim:whitespace"
    kv_events: bool = Field(True, alias="kvEvents")
    pd: PDConfig = Field(default_factory=PDConfig)
    session_headers: list[str] = Field(default_factory=lambda: ["x-session-id", "x-user-id"],
                                       alias="sessionHeaders")
    lora_paths: dict[str, str] = Field(default_factory=dict, alias="loraPaths")
    access_log: bool = Field(True, alias="accessLog")
    seed: int | None = None
    model_routes: list[dict[str, Any]] = Field(default_factory=list, alias="modelRoutes")
    model_servers: list[dict[str, Any]] = Field(default_factory=list, alias="modelServers")
    endpoints: list[StaticEndpoint] = Field(default_factory=list)
    providers: ProvidersConfig = Field(default_factory=ProvidersConfig)
    # Static mode: ExternalModelProvider objects and their credential Secrets (labelled, as in a cluster).
    external_model_providers: list[dict[str, Any]] = Field(default_factory=list, alias="externalModelProviders")
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)  # Gateway API mode, router.gateway
    auth: AuthConfig | None = None
    fairness: FairnessConfig | None = None

    @model_validator(mode="after")
    def _profile_exists(self) -> RouterConfig:
        if self.profile not in self.all_profiles():
            raise ValueError(f"profile: unknown profile {self.profile!r}; "
                             f"defined: {sorted(self.all_profiles())}")
        for name, prof in self.all_profiles().items():
            build_profile(name, prof, random.Random(0))  # validate plugin names and params now
        return self

    def all_profiles(self) -> dict[str, ProfileConfig]:
        return {**BUILTIN_PROFILES, **self.profiles}


def _p(type_: str, weight: float = 1.0, **params: Any) -> PluginRef:
    return PluginRef(type=type_, weight=weight, params=params)


# The default (see docs/router.md): prefix affinity from the speculative precise index
# outweighs load, so a prefix stays on one pod (no copies evicting each other); load picks
# the pod for a new prefix (with llm-d's no-hit-lru spreading new prefixes in turn), and the
# imbalance guard moves a hot prefix off a pod far ahead.
BUILTIN_PROFILES: dict[str, ProfileConfig] = {
    "default": ProfileConfig(
        filters=[_p("healthy"), _p("imbalance", abs_threshold=32, rel_threshold=2.0)],
        scorers=[_p("kv-events", 3), _p("inflight", 1, by="requests"), _p("queue", 1), _p("no-hit-lru", 1),
                 _p("lora-affinity", 1)],
        picker=_p("max-score")),
    "random": ProfileConfig(picker=_p("random")),
    "round-robin": ProfileConfig(picker=_p("round-robin")),
    "least-request": ProfileConfig(scorers=[_p("inflight", 1, by="requests")], picker=_p("max-score")),
    "prefix": ProfileConfig(scorers=[_p("prefix-cache", 3), _p("queue", 2), _p("kv-usage", 2)],
                            picker=_p("max-score")),
    "precise": ProfileConfig(scorers=[_p("kv-events", 3, fallback_to_approximate=False), _p("queue", 2),
                                      _p("kv-usage", 2)], picker=_p("max-score")),
    "affinity": ProfileConfig(scorers=[_p("kv-events", 3), _p("inflight", 1, by="requests"), _p("queue", 1)],
                              picker=_p("max-score")),
    "dynamo": ProfileConfig(scorers=[_p("cost-model", 1, overlap_weight=1.0)], picker=_p("max-score")),
    # The reference systems' own policies with their defaults, for comparison (docs/router.md).
    # llm-d's EPP defaults (pkg/epp/config/loader/defaults.go) and its optimized-baseline guide.
    "llm-d": ProfileConfig(scorers=[_p("queue", 2), _p("kv-usage", 2), _p("prefix-cache", 3)],
                           picker=_p("max-score")),
    "llm-d-optimized-baseline": ProfileConfig(filters=[_p("prefix-cache-affinity")],
                                              scorers=[_p("token-load", 1)], picker=_p("max-score")),
    # SGLang's cache_aware: the cache scorer outweighs load lexicographically (see cache_aware.py).
    "sglang-cache-aware": ProfileConfig(
        filters=[_p("imbalance-least-loaded", abs_threshold=64, rel_threshold=1.5)],
        scorers=[_p("cache-aware", 1000, cache_threshold=0.3), _p("inflight", 1, by="requests")],
        picker=_p("max-score")),
    "sglang-power-of-two": ProfileConfig(scorers=[_p("inflight", 1, by="requests")], picker=_p("power-of-two")),
    # SGLang consistent_hashing, vLLM router's session hash, production-stack's `session` logic.
    "session": ProfileConfig(picker=_p("consistent-hash")),
    "aibrix-least-latency": ProfileConfig(scorers=[_p("least-latency", 1)], picker=_p("max-score")),
    "aibrix-throughput": ProfileConfig(scorers=[_p("throughput", 1)], picker=_p("max-score")),
    "aibrix-least-kv-cache": ProfileConfig(scorers=[_p("least-kv-cache", 1)], picker=_p("max-score")),
    "aibrix-least-utilization": ProfileConfig(scorers=[_p("least-utilization", 1)], picker=_p("max-score")),
}

_SCORERS: dict[str, type] = {
    "prefix-cache": PrefixCacheScorer, "kv-events": KVEventsScorer, "kv-usage": KVUsageScorer,
    "queue": QueueScorer, "running": RunningScorer, "inflight": InflightScorer, "latency": LatencyScorer,
    "lora-affinity": LoraAffinityScorer, "cost-model": CostModelScorer,
    # Parity with llm-d, SGLang and AIBrix (reference names without the "-scorer" suffix).
    "load-aware": LoadAwareScorer, "active-request": ActiveRequestScorer, "token-load": TokenLoadScorer,
    "no-hit-lru": NoHitLRUScorer, "cache-aware": CacheAwareScorer, "least-latency": LeastLatencyScorer,
    "throughput": ThroughputScorer, "least-kv-cache": LeastKVCacheScorer, "least-gpu-cache": LeastGPUCacheScorer,
    "least-utilization": LeastUtilizationScorer, "least-busy-time": LeastBusyTimeScorer,
}
_FILTERS: dict[str, type] = {"healthy": flt.HealthyFilter, "busy": flt.BusyFilter, "lora": flt.LoraFilter,
                             "imbalance": flt.ImbalanceFilter,
                             "imbalance-least-loaded": flt.LeastLoadedIfImbalancedFilter,
                             "prefix-cache-affinity": flt.PrefixCacheAffinityFilter}
_PICKERS: dict[str, type] = {"max-score": pk.MaxScorePicker, "weighted-random": pk.WeightedRandomPicker,
                             "softmax": pk.SoftmaxPicker, "random": pk.RandomPicker,
                             "round-robin": pk.RoundRobinPicker, "power-of-two": pk.PowerOfTwoPicker,
                             "consistent-hash": pk.ConsistentHashPicker}


def _make(kind: str, registry: dict[str, type], ref: PluginRef, where: str, **extra: Any) -> Any:
    cls = registry.get(ref.type)
    if cls is None:
        raise ValueError(f"{where}: unknown {kind} {ref.type!r}; expected one of {sorted(registry)}")
    try:
        return cls(**ref.params, **extra)
    except (TypeError, ValueError) as exc:  # ValueError: a plugin rejected a param's value
        raise ValueError(f"{where}: bad params for {kind} {ref.type!r}: {exc}") from None


def build_profile(name: str, cfg: ProfileConfig, rng: random.Random) -> Profile:
    where = f"profiles.{name}"
    filters: list[Filter] = [_make("filter", _FILTERS, f, f"{where}.filters") for f in cfg.filters]
    scorers = [WeightedScorer(scorer=_make("scorer", _SCORERS, s, f"{where}.scorers"), weight=s.weight)
               for s in cfg.scorers]
    picker_extra = {"rng": rng} if cfg.picker.type != "round-robin" else {}
    picker: Picker = _make("picker", _PICKERS, cfg.picker, f"{where}.picker", **picker_extra)
    _: list[Scorer] = [s.scorer for s in scorers]
    return Profile(name=name, filters=filters, scorers=scorers, picker=picker)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RouterConfig:
    """Read and validate the YAML file; errors name the field and the reason."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        data = loaded or {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ValueError(f"{path or 'router config'}: invalid configuration:\n  " + "\n  ".join(lines)) from None
