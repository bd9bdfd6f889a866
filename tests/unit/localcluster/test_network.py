from __future__ import annotations

from pathlib import Path

import pytest

from caldera.localcluster import network


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALDERA_CACHE", str(tmp_path / "cache"))


def test_first_cluster_gets_127_1(tmp_path: Path) -> None:
    assert str(network.allocate(tmp_path / "a", lambda d: True)) == "127.1.0.0/16"


def test_second_running_cluster_gets_its_own_network(tmp_path: Path) -> None:
    network.allocate(tmp_path / "a", lambda d: True)
    assert str(network.allocate(tmp_path / "b", lambda d: True)) == "127.2.0.0/16"


def test_network_of_a_stopped_cluster_can_be_taken_over(tmp_path: Path) -> None:
    network.allocate(tmp_path / "a", lambda d: True)
    assert str(network.allocate(tmp_path / "b", lambda d: False)) == "127.1.0.0/16"


def test_a_directory_keeps_its_network(tmp_path: Path) -> None:
    network.allocate(tmp_path / "a", lambda d: True)
    network.allocate(tmp_path / "b", lambda d: True)
    assert str(network.allocate(tmp_path / "b", lambda d: True)) == "127.2.0.0/16"
    assert network.saved(tmp_path / "b") == network.allocate(tmp_path / "b", lambda d: True)
