"""Fault injection (failure rates, crashes mid-stream, slow start) and graceful shutdown."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable

import httpx
import pytest

from enginesim.testing import SimProcess, wait_until

Start = Callable[..., SimProcess]
BODY = {"prompt": "fault injection", "max_tokens": 4}


@pytest.mark.parametrize(("kind", "status"), [("rate_limit", 429), ("server_error", 500),
                                              ("invalid_api_key", 401), ("model_not_found", 404),
                                              ("context_length", 400)])
def test_failure_rate_one_fails_every_request_with_the_type(start_sim: Start, kind: str, status: int) -> None:
    sim = start_sim("--failure-rate", "1", "--failure-types", kind)
    resp = httpx.post(sim.url + "/v1/completions", json=BODY)
    assert resp.status_code == status
    assert "injected" in resp.json()["error"]["message"]


def test_failure_rate_zero_fails_nothing(sim: SimProcess) -> None:
    assert all(httpx.post(sim.url + "/v1/completions", json=BODY).status_code == 200 for _ in range(5))


def stream_lines(sim: SimProcess, max_tokens: int) -> tuple[list[str], Exception | None]:
    lines: list[str] = []
    try:
        with httpx.stream("POST", sim.url + "/v1/completions", timeout=30,
                          json={"prompt": "crash", "max_tokens": max_tokens, "stream": True}) as resp:
            for line in resp.iter_lines():
                if line:
                    lines.append(line)
    except httpx.HTTPError as exc:
        return lines, exc
    return lines, None


def test_crash_after_tokens_kills_the_process_mid_stream(start_sim: Start) -> None:
    sim = start_sim("--crash-after-tokens", "3")
    lines, error = stream_lines(sim, 50)
    assert error is not None or "data: [DONE]" not in lines
    assert sim.proc.wait(timeout=10) == -signal.SIGKILL


def test_crash_mode_abort_resets_the_connection_and_keeps_serving(start_sim: Start) -> None:
    sim = start_sim("--crash-after-tokens", "3", "--crash-mode", "abort")
    lines, error = stream_lines(sim, 50)
    assert error is not None or "data: [DONE]" not in lines
    assert sim.healthy()
    assert httpx.post(sim.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_short_requests_finish_before_the_crash_point(start_sim: Start) -> None:
    sim = start_sim("--crash-after-tokens", "10")
    lines, error = stream_lines(sim, 5)
    assert error is None and lines[-1] == "data: [DONE]"


def test_startup_delay_keeps_health_and_requests_unavailable(start_sim: Start) -> None:
    sim = start_sim("--startup-delay", "600", "--time-scale", "20", wait_healthy=False)

    def answering() -> bool:
        try:
            httpx.get(sim.url + "/health", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    wait_until(answering)
    assert httpx.get(sim.url + "/health").status_code == 503
    assert httpx.post(sim.url + "/v1/completions", json=BODY).status_code == 503


def test_health_turns_ok_after_the_startup_delay(start_sim: Start) -> None:
    sim = start_sim("--startup-delay", "20", "--time-scale", "20", wait_healthy=False)
    sim.wait_healthy()
    assert httpx.post(sim.url + "/v1/completions", json=BODY).status_code == 200


def test_sigterm_finishes_in_flight_streams_and_refuses_new_requests(start_sim: Start) -> None:
    sim = start_sim("--time-scale", "1", "--shutdown-grace-period", "20")
    lines: list[str] = []
    with httpx.stream("POST", sim.url + "/v1/completions", timeout=30,
                      json={"prompt": "drain", "max_tokens": 60, "stream": True}) as resp:
        lines_iter = resp.iter_lines()
        lines.append(next(lines_iter))
        sim.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(sim.url + "/health").status_code == 503)
        assert httpx.post(sim.url + "/v1/completions", json=BODY).status_code == 503
        lines.extend(line for line in lines_iter if line)
    assert lines[-1] == "data: [DONE]"
    assert sim.proc.wait(timeout=10) == 0


def test_grace_period_bounds_the_drain(start_sim: Start) -> None:
    sim = start_sim("--time-scale", "1", "--shutdown-grace-period", "0.5")
    lines: list[str] = []
    with httpx.stream("POST", sim.url + "/v1/completions", timeout=30,
                      json={"prompt": "too long", "max_tokens": 5000, "stream": True}) as resp:
        lines_iter = resp.iter_lines()
        lines.append(next(lines_iter))
        sim.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(httpx.HTTPError):
            lines.extend(line for line in lines_iter if line)
    assert "data: [DONE]" not in lines
    assert sim.proc.wait(timeout=10) == 0
