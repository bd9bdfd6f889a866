"""Prefill/decode disaggregation: choosing the pair and shaping the two requests.

Decode is chosen first (it holds the request longest), then a prefill pod in the same
pdGroup. Prefill is skipped when the decode pod already has all but a few prompt tokens
cached. Connectors:
- `nixl` (and `mooncake`): prefill carries `kv_transfer_params{do_remote_decode: true}`;
  the `kv_transfer_params` in its response go into the decode request.
- `http` / `lmcache`: prefill with max_tokens=1 (no streaming), then the original request
  to decode, which finds the prompt in its (shared) cache.
- `sglang`: both at once, with the prefill pod's bootstrap host/port and a random room.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from router.endpoints import Endpoint
from router.request import ParsedRequest
from router.routing import Server

NIXL_PREFILL_PARAMS: dict[str, Any] = {
    "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
    "remote_block_ids": None, "remote_host": None, "remote_port": None,
}


def connector_of(server: Server) -> str:
    kind = (server.kv_connector or "").lower()
    if kind in ("nixl", "mooncake"):
        return "nixl"
    if kind in ("http", "lmcache"):
        return "http"
    return "sglang" if server.engine == "SGLang" else "http"


def skip_prefill(prompt_tokens: int, cached_fraction: float, threshold_tokens: int) -> bool:
    """True when the uncached part of the prompt is below the threshold (0 disables skipping)."""
    if threshold_tokens <= 0:
        return False
    return prompt_tokens * (1.0 - cached_fraction) < threshold_tokens


def same_group(prefill: list[Endpoint], decode: Endpoint) -> list[Endpoint]:
    return [p for p in prefill if p.pd_group == decode.pd_group]


@dataclass(frozen=True)
class PDPlan:
    connector: str
    prefill_body: bytes | None
    decode_extra: dict[str, Any]


def _one_token(req: ParsedRequest, model: str, extra: dict[str, Any]) -> bytes:
    limits: dict[str, Any] = {"max_tokens": 1, "stream": False}
    if "max_completion_tokens" in req.body:
        limits["max_completion_tokens"] = 1
    return req.with_model(model, extra={**extra, **limits}, drop=("stream_options",))


def plan(req: ParsedRequest, model: str, connector: str, prefill: Endpoint, bootstrap_port: int,
         rng: random.Random | None = None) -> PDPlan:
    if connector == "nixl":
        return PDPlan(connector, _one_token(req, model, {"kv_transfer_params": NIXL_PREFILL_PARAMS}), {})
    if connector == "sglang":
        boot = {"bootstrap_host": prefill.host, "bootstrap_port": prefill.bootstrap_port or bootstrap_port,
                "bootstrap_room": (rng or random).getrandbits(63)}
        return PDPlan(connector, req.with_model(model, extra=boot), boot)
    return PDPlan(connector, _one_token(req, model, {}), {})


def decode_extra_from_prefill(connector: str, prefill_response: Any) -> dict[str, Any]:
    """For NIXL: copy the prefill response's kv_transfer_params into the decode request."""
    if connector != "nixl" or not isinstance(prefill_response, dict):
        return {}
    params = prefill_response.get("kv_transfer_params")
    return {"kv_transfer_params": params} if isinstance(params, dict) else {}
