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


def test_ports_avoid_the_ephemeral_range(tmp_path: Path) -> None:
    assert all(p < 32768 for p in ports.allocate(tmp_path).all())


def test_saved_ephemeral_ports_are_replaced_when_the_cluster_is_stopped(tmp_path: Path) -> None:
    old = ports.Ports(**{name: 40000 + i for i, name in enumerate(ports.NAMES)})
    (tmp_path / "ports.json").write_text(old.model_dump_json())
    assert ports.allocate(tmp_path) != old and ports.allocate(tmp_path, running=True) == ports.allocate(tmp_path)
