"""Kthena's heterogeneous split: `costExpansionRatePercent` block order.

Kept so that Caldera's optimiser can be compared with it and selected instead of it.
Each variant's spare range ``max - min`` is cut into blocks of sizes ``1, P, P², …``
(``P = rate/100``; the last block is what remains), each block costs ``cost * size``,
all blocks are sorted by cost (ties by variant order), every variant first gets its
minimum and the rest of the total fills the blocks in order, the last one partly.
At exactly 100% a variant is one block priced at its unit cost (cheapest first).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariantBounds:
    name: str
    cost: float
    min_replicas: int
    max_replicas: int

    def __post_init__(self) -> None:
        if self.cost < 0:
            raise ValueError(f"variant {self.name!r}: cost must be >= 0, got {self.cost}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"variant {self.name!r}: need 0 <= minReplicas <= maxReplicas, "
                f"got {self.min_replicas}..{self.max_replicas}")


@dataclass(frozen=True)
class Block:
    variant: int
    size: int
    cost: float


def blocks(variants: list[VariantBounds], rate_percent: float) -> list[Block]:
    if rate_percent < 0:
        raise ValueError(f"costExpansionRatePercent must be >= 0, got {rate_percent}")
    growth = rate_percent / 100
    out: list[Block] = []
    for i, v in enumerate(variants):
        spare = v.max_replicas - v.min_replicas
        if spare <= 0:
            continue
        if rate_percent == 100:
            out.append(Block(i, spare, v.cost))
            continue
        length = 1.0
        while spare > 0:
            size = min(spare, max(int(length), 1))
            out.append(Block(i, size, v.cost * size))
            spare -= size
            length *= growth
    # Python's sort is stable: equal costs keep variant order, then block order.
    return sorted(out, key=lambda b: (b.cost, b.variant))


def distribute(total: int, variants: list[VariantBounds], rate_percent: float) -> list[int]:
    """Replicas per variant for a pool total, clamped to the pool's [Σmin, Σmax]."""
    counts = [v.min_replicas for v in variants]
    remaining = max(0, min(total, sum(v.max_replicas for v in variants)) - sum(counts))
    for block in blocks(variants, rate_percent):
        if remaining <= 0:
            break
        take = min(block.size, remaining)
        counts[block.variant] += take
        remaining -= take
    return counts
