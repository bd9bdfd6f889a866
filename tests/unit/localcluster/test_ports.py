from __future__ import annotations

from pathlib import Path

from caldera.localcluster import ports


def test_ports_are_stable_for_a_directory(tmp_path: Path) -> None:
    assert ports.allocate(tmp_path) == ports.allocate(tmp_path)


def test_different_directories_get_different_blocks(tmp_path: Path) -> None:
    assert ports.block_for(tmp_path / "a").etcd != ports.block_for(tmp_path / "b").etcd


def test_ports_of_a_block_are_distinct_and_in_range(tmp_path: Path) -> None:
    block = ports.allocate(tmp_path).all()
    assert len(set(block)) == len(block) and all(20000 <= p < 60000 for p in block)
