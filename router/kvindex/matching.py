"""Longest-prefix matching over a block → owning-pods map, shared by both indexes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set


def leading_matches(owners: Mapping[int, Set[str]], keys: Sequence[int]) -> dict[str, int]:
    """For each pod holding the first block: how many leading blocks it holds."""
    if not keys:
        return {}
    first = owners.get(keys[0])
    if not first:
        return {}
    counts = dict.fromkeys(first, 1)
    alive = set(first)
    for i in range(1, len(keys)):
        block_owners = owners.get(keys[i])
        if not block_owners:
            break
        alive &= block_owners
        if not alive:
            break
        for pod in alive:
            counts[pod] = i + 1
    return counts
