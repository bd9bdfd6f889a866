"""The simulator's typed configuration, built from the command line and validated once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from enginesim.kv_events import Encoding, KVEventsConfig
from enginesim.latency import Profile

FAILURE_TYPES = ("rate_limit", "invalid_api_key", "context_length", "server_error", "invalid_request",
                 "model_not_found")


@dataclass(frozen=True)
class LoraModule:
    name: str
    path: str
    base_model_name: str | None = None


def parse_lora_module(text: str) -> LoraModule:
    """``name=path`` or vLLM's JSON form ``{"name": ..., "path": ..., "base_model_name": ...}``."""
    text = text.strip()
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"lora-modules: invalid JSON {text!r} ({exc})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("path"), str):
            raise ValueError(f"lora-modules: JSON form needs string 'name' and 'path', got {text!r}")
        return LoraModule(raw["name"], raw["path"], raw.get("base_model_name"))
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"lora-modules: expected name=path, got {text!r}")
    return LoraModule(name, path)


FAKE_METRIC_KEYS = ("running-requests", "waiting-requests", "kv-cache-usage")


def parse_fake_metrics(values: dict[str, object]) -> dict[str, float]:
    """Validate llm-d-inference-sim style fake gauge values."""
    unknown = sorted(set(values) - set(FAKE_METRIC_KEYS))
    if unknown:
        raise ValueError(f"fake-metrics: unknown keys {unknown}; expected some of {list(FAKE_METRIC_KEYS)}")
    fake: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"fake-metrics.{key}: expected a non-negative number, got {value!r}")
        if key == "kv-cache-usage" and value > 1:
            raise ValueError(f"fake-metrics.kv-cache-usage: expected a fraction in [0, 1], got {value}")
        fake[key] = float(value)
    return fake


@dataclass(frozen=True)
class KVTransferConfig:
    """vLLM's ``--kv-transfer-config`` (only the connector and role matter here)."""

    kv_connector: str
    kv_role: str = "kv_both"
    engine_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> KVTransferConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"kv-transfer-config: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("kv_connector"), str):
            raise ValueError("kv-transfer-config: expected a JSON object with a string 'kv_connector'")
        role = raw.get("kv_role", "kv_both")
        if role not in ("kv_producer", "kv_consumer", "kv_both"):
            raise ValueError(f"kv-transfer-config.kv_role: expected kv_producer|kv_consumer|kv_both, got {role!r}")
        return cls(raw["kv_connector"], role, raw.get("engine_id"))


@dataclass(frozen=True)
class FaultConfig:
    failure_rate: float = 0.0
    failure_types: tuple[str, ...] = FAILURE_TYPES
    crash_after_tokens: int | None = None
    crash_mode: Literal["exit", "abort"] = "exit"
    startup_delay: float = 0.0

    def validate(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure-rate: must be in [0, 1], got {self.failure_rate}")
        bad = [t for t in self.failure_types if t not in FAILURE_TYPES]
        if bad:
            raise ValueError(f"failure-types: unknown {bad}; expected some of {list(FAILURE_TYPES)}")
        if self.crash_after_tokens is not None and self.crash_after_tokens < 1:
            raise ValueError(f"crash-after-tokens: must be >= 1, got {self.crash_after_tokens}")
        if self.startup_delay < 0:
            raise ValueError(f"startup-delay: must be >= 0, got {self.startup_delay}")


@dataclass(frozen=True)
class SimConfig:
    model: str
    served_model_names: tuple[str, ...]
    host: str
    port: int
    profile: Profile
    mode: Literal["vllm", "sglang"] = "vllm"
    tokenizer: str = "whitespace"
    seed: int = 0
    hash_seed: int = 0
    time_scale: float = 1.0
    max_waiting_queue_length: int = 1000
    queue_full_status: int = 429
    enable_prefix_caching: bool = True
    default_max_tokens: int = 256
    kv_events: KVEventsConfig = field(default_factory=KVEventsConfig)
    kv_events_encoding: Encoding = "array"
    enable_lora: bool = False
    lora_modules: tuple[LoraModule, ...] = ()
    max_loras: int = 1
    kv_transfer: KVTransferConfig | None = None
    kv_transfer_timeout: float = 480.0
    disaggregation_mode: Literal["null", "prefill", "decode"] = "null"
    bootstrap_port: int = 8998
    faults: FaultConfig = field(default_factory=FaultConfig)
    shutdown_grace_period: float = 30.0
    api_key: str | None = None
    show_hidden_metrics_for_version: str | None = None
    loop_lag_probe_interval: float = 0.02
    fake_metrics: dict[str, float] | None = None

    def validate(self) -> None:
        self.profile.validate()
        self.faults.validate()
        if not self.served_model_names:
            raise ValueError("served-model-name: at least one name is required")
        if self.time_scale <= 0:
            raise ValueError(f"time-scale: must be > 0, got {self.time_scale}")
        if self.max_waiting_queue_length < 0:
            raise ValueError(f"max-waiting-queue-length: must be >= 0, got {self.max_waiting_queue_length}")
        if self.max_loras < 1:
            raise ValueError(f"max-loras: must be >= 1, got {self.max_loras}")
        if self.lora_modules and not self.enable_lora:
            raise ValueError("lora-modules: requires --enable-lora")
        if self.default_max_tokens < 1:
            raise ValueError(f"default-max-tokens: must be >= 1, got {self.default_max_tokens}")
        if self.loop_lag_probe_interval <= 0:
            raise ValueError(f"loop-lag-probe-interval: must be > 0, got {self.loop_lag_probe_interval}")
        if self.shutdown_grace_period < 0:
            raise ValueError(f"shutdown-grace-period: must be >= 0, got {self.shutdown_grace_period}")
