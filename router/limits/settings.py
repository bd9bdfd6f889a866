"""Typed configuration of per-user fairness (authentication is in `router.limits.auth`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FairnessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # Requests per model admitted to the engines at once; the rest wait in the fair queue.
    max_concurrent: int = Field(ge=1, alias="maxConcurrent")
    # Slots of the gate only users under their fair share may take (default: a quarter).
    reserved: int | None = Field(None, ge=0, alias="reservedSlots")
    window_s: float = Field(300.0, gt=0, le=86400, alias="window")
    input_weight: float = Field(1.0, ge=0, alias="inputWeight")
    output_weight: float = Field(2.0, ge=0, alias="outputWeight")
    token_weight: float = Field(1.0, ge=0, alias="tokenWeight")
    request_weight: float = Field(0.0, ge=0, alias="requestWeight")
    queue_timeout_s: float = Field(60.0, gt=0, alias="queueTimeout")
    max_queue: int = Field(10_000, ge=1, alias="maxQueue")
    # Where the user comes from when authentication is off (with auth: the key's user or JWT sub).
    user_headers: list[str] = Field(default_factory=lambda: ["x-user-id"], alias="userHeaders")

    @model_validator(mode="after")
    def _reserved_fits(self) -> FairnessConfig:
        if self.reserved is not None and self.reserved >= self.max_concurrent:
            raise ValueError(f"reservedSlots ({self.reserved}) must be below maxConcurrent ({self.max_concurrent})")
        return self

    @property
    def reserved_slots(self) -> int:
        return self.reserved if self.reserved is not None else self.max_concurrent // 4
