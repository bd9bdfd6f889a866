"""Typed configuration of retries, migration, overload rejection, admission and drain."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from router.resilience.overload import BusyThresholds


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OverloadConfig(_Model):
    """Busy thresholds (Dynamo's --active-decode-blocks-threshold and friends); unset = not checked."""

    max_kv_usage: float | None = Field(None, gt=0, le=1, alias="maxKvUsage")
    max_waiting: float | None = Field(None, ge=0, alias="maxWaiting")
    max_inflight: int | None = Field(None, ge=1, alias="maxInflightPerEndpoint")
    max_prefill_tokens: int | None = Field(None, ge=1, alias="maxPrefillTokens")
    staleness_s: float = Field(5.0, gt=0, alias="staleness")

    def thresholds(self) -> BusyThresholds:
        return BusyThresholds(max_kv_usage=self.max_kv_usage, max_waiting=self.max_waiting,
                              max_inflight=self.max_inflight, max_prefill_tokens=self.max_prefill_tokens,
                              staleness_s=self.staleness_s)


class ResilienceConfig(_Model):
    # Retries after the first attempt when a ModelServer's trafficPolicy.retry sets none.
    retries: int = Field(2, ge=0)
    # Times one stream may move to another pod after breaking mid-way (0 disables migration).
    migration_limit: int = Field(3, ge=0, alias="migrationLimit")
    # P/D: with no prefill pod left, send the request to the decode pod alone when its engine can
    # prefill itself (vLLM); off: answer 503 instead.
    pd_fallback_to_decode: bool = Field(True, alias="pdFallbackToDecode")
    overload: OverloadConfig = Field(default_factory=OverloadConfig)
    # Requests the router holds at once (reading, queued, streaming); beyond it: 503 at once.
    max_concurrent_requests: int | None = Field(None, ge=1, alias="maxConcurrentRequests")
    retry_after_s: int = Field(1, ge=1, alias="retryAfter")
    drain_grace_s: float = Field(30.0, ge=0, alias="drainGracePeriod")
