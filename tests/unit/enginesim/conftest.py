"""Real enginesim processes on 127.0.0.1 for the HTTP-level tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from enginesim.testing import SimProcess, launch_sim

DEFAULT_ARGS = ("--model", "sim-model", "--time-scale", "20", "--num-gpu-blocks", "512", "--block-size", "16")


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., SimProcess]]:
    """Factory: ``start_sim(*extra_args, wait_healthy=True, defaults=True)``; stopped at teardown."""
    started: list[SimProcess] = []

    def factory(*args: str, wait_healthy: bool = True, defaults: bool = True) -> SimProcess:
        sim = launch_sim(tmp_path, *(DEFAULT_ARGS if defaults else ()), *args, wait_healthy=wait_healthy)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """One shared vLLM-mode engine for tests that only read or add cache state."""
    s = launch_sim(tmp_path_factory.mktemp("sim"), *DEFAULT_ARGS, "--served-model-name", "sim-model",
                   "--served-model-name", "alias-model", "--max-model-len", "2048")
    yield s
    s.stop()
