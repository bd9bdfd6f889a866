"""Token-based rate limits per ModelRoute (`spec.rateLimit`), local or global through Redis.

As Kthena: input tokens (estimated from the prompt) are charged before the request and
refused with 429 when the bucket lacks them; the output bucket must hold at least one token
up front, and the completion tokens actually produced are charged afterwards (the bucket
may go into debt, which later requests wait out). Buckets hold `N` tokens and refill at
`N` per unit ("month" is 30 days). Local buckets live in this router; with
`global.redis.address` every router shares one bucket in Redis, updated atomically by a Lua
script on the server's clock.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("caldera.router.ratelimit")

UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0, "month": 30 * 86400.0}
KEY_PREFIX = "caldera:ratelimit"


@dataclass(frozen=True)
class RouteLimit:
    """A route's compiled `rateLimit`."""

    route: str
    input_per_unit: int | None
    output_per_unit: int | None
    unit: str
    redis_address: str | None

    @property
    def unit_s(self) -> float:
        return UNIT_SECONDS[self.unit]


def compile_limit(route: str, spec: Mapping[str, Any] | None) -> RouteLimit | None:
    """None when the route has no limit. Raises ValueError naming the field."""
    if not spec:
        return None
    unit = spec.get("unit") or "second"
    if unit not in UNIT_SECONDS:
        raise ValueError(f"ModelRoute {route}: spec.rateLimit.unit must be one of {sorted(UNIT_SECONDS)}, "
                         f"got {unit!r}")
    values: dict[str, int | None] = {}
    for name in ("inputTokensPerUnit", "outputTokensPerUnit"):
        v = spec.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"ModelRoute {route}: spec.rateLimit.{name} must be a positive integer, got {v!r}")
        values[name] = v
    if values["inputTokensPerUnit"] is None and values["outputTokensPerUnit"] is None:
        return None
    redis = ((spec.get("global") or {}).get("redis") or {}).get("address")
    return RouteLimit(route=route, input_per_unit=values["inputTokensPerUnit"],
                      output_per_unit=values["outputTokensPerUnit"], unit=unit, redis_address=redis or None)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float  # until the refused amount is available (0 when allowed)


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; `charge` may take it below zero."""

    capacity: float
    rate: float
    tokens: float = field(default=-1.0)
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, n: float, now: float, need: float | None = None) -> Verdict:
        """Take `n` if at least `need` (default n) are there; otherwise take nothing."""
        self._refill(now)
        need = n if need is None else need
        if self.tokens >= need:
            self.tokens -= n
            return Verdict(True, int(self.capacity), max(0, int(self.tokens)), 0.0)
        wait = (need - self.tokens) / self.rate if self.rate > 0 else math.inf
        return Verdict(False, int(self.capacity), max(0, int(self.tokens)), wait)

    def charge(self, n: float, now: float) -> None:
        self._refill(now)
        self.tokens -= n


# KEYS[1] bucket key; ARGV: capacity, rate per second, n to take, need (0 = charge unconditionally).
# Returns {allowed, remaining (floor), wait in ms}. Time is the Redis server's, so every router agrees.
LUA_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil then tokens = capacity; stamp = now end
if now > stamp then tokens = math.min(capacity, tokens + (now - stamp) * rate); stamp = now end
local allowed = 0
local wait = 0
if need <= 0 or tokens >= need then
  tokens = tokens - n
  allowed = 1
else
  wait = math.ceil((need - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 60000)
local remaining = math.floor(tokens)
if remaining < 0 then remaining = 0 end
return {allowed, remaining, wait}
"""


class RateLimiter:
    """Buckets for every limited route: local in memory, global in Redis (one client per address)."""

    def __init__(self, on_unavailable: Callable[[str], None] | None = None) -> None:
        self.on_unavailable = on_unavailable  # called with the route when Redis cannot be reached
        self._local: dict[tuple[str, str], TokenBucket] = {}
        self._clients: dict[str, Any] = {}
        self._scripts: dict[str, Any] = {}

    def _bucket(self, limit: RouteLimit, kind: str, per_unit: int) -> TokenBucket:
        key = (limit.route, kind)
        bucket = self._local.get(key)
        rate = per_unit / limit.unit_s
        if bucket is None or bucket.capacity != per_unit or bucket.rate != rate:
            bucket = self._local[key] = TokenBucket(capacity=per_unit, rate=rate, stamp=time.monotonic())
        return bucket

    def _script(self, address: str) -> Any:
        script = self._scripts.get(address)
        if script is None:
            import redis.asyncio as aioredis

            host, _, port = address.rpartition(":")
            client = aioredis.Redis(host=host or address, port=int(port) if port else 6379,
                                    socket_timeout=1.0, socket_connect_timeout=1.0)
            self._clients[address] = client
            script = self._scripts[address] = client.register_script(LUA_TAKE)
        return script

    async def _take(self, limit: RouteLimit, kind: str, per_unit: int, n: int, need: int) -> Verdict:
        if limit.redis_address is None:
            bucket = self._bucket(limit, kind, per_unit)
            now = time.monotonic()
            if need <= 0:
                bucket.charge(n, now)
                return Verdict(True, per_unit, max(0, int(bucket.tokens)), 0.0)
            return bucket.take(n, now, need)
        key = f"{KEY_PREFIX}:{limit.route}:{kind}"
        try:
            allowed, remaining, wait_ms = await self._script(limit.redis_address)(
                keys=[key], args=[per_unit, per_unit / limit.unit_s, n, need])
        except Exception as exc:  # Redis down: serve rather than refuse everyone (logged, counted)
            log.warning("global rate limit unavailable; allowing", extra={"route": limit.route,
                                                                          "reason": repr(exc)})
            if self.on_unavailable is not None:
                self.on_unavailable(limit.route)
            return Verdict(True, per_unit, per_unit, 0.0)
        return Verdict(bool(allowed), per_unit, int(remaining), int(wait_ms) / 1000.0)

    async def admit(self, limit: RouteLimit, input_tokens: int) -> tuple[Verdict | None, Verdict | None]:
        """Charge the input estimate and check the output bucket. Either verdict may refuse."""
        vin = vout = None
        if limit.output_per_unit is not None:
            # Only check (take 0, need 1): refusing on output must not cost input tokens.
            vout = await self._take(limit, "output", limit.output_per_unit, 0, 1)
            if not vout.allowed:
                return None, vout
        if limit.input_per_unit is not None:
            vin = await self._take(limit, "input", limit.input_per_unit, input_tokens,
                                   min(input_tokens, limit.input_per_unit))
        return vin, vout

    async def charge_output(self, limit: RouteLimit, tokens: int) -> None:
        if limit.output_per_unit is not None and tokens > 0:
            await self._take(limit, "output", limit.output_per_unit, tokens, 0)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        self._scripts.clear()


def headers(limit: RouteLimit, vin: Verdict | None, vout: Verdict | None) -> dict[str, str]:
    """OpenAI-style x-ratelimit-* headers for both buckets, plus Retry-After when refused."""
    out: dict[str, str] = {"x-ratelimit-unit": limit.unit,
                           "x-ratelimit-scope": "global" if limit.redis_address else "local"}
    wait = 0.0
    for kind, v in (("input", vin), ("output", vout)):
        if v is None:
            continue
        out[f"x-ratelimit-limit-{kind}-tokens"] = str(v.limit)
        out[f"x-ratelimit-remaining-{kind}-tokens"] = str(v.remaining)
        if not v.allowed:
            wait = max(wait, v.retry_after_s)
    if wait > 0:
        out["retry-after"] = str(max(1, math.ceil(wait)) if math.isfinite(wait) else 3600)
    return out
