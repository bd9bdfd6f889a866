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


def decode_serves_alone(server: Server) -> bool:
    """Whether a decode pod can serve the whole request when no prefill pod can (the fallback).

    vLLM: a decode instance is a full engine; its KV connector only loads remote KV when the
    request carries `kv_transfer_params`, so a plain request is prefilled locally (HTTP/LMCache
    decode pods simply miss the shared cache). SGLang: a server in `--disaggregation-mode decode`
    only takes requests that name a bootstrap room; it has no path to run a prefill itself.
    """
    return server.engine != "SGLang"


def prefill_reusable(connector: str, previous_group: str | None, next_group: str | None) -> bool:
    """Whether a finished prefill still serves a retry of its decode on another pod.

    Only the HTTP/LMCache connector: its prefill left the KV in the group's shared cache, which
    a failed decode does not consume. NIXL's blocks are held for one pull that the failed decode
    may already have made, and an SGLang bootstrap room belongs to the decode that joined it.
    """
    return connector == "http" and previous_group == next_group
