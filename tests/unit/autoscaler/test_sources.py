"""Metric sources: Prometheus text to totals, rates and quantiles; pods handled like HPA."""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from autoscaler.sources import series
from autoscaler.sources.pod_scrape import History, PodMetric, PodScraper, PodTarget, ScrapeConfig, evaluate
from autoscaler.sources.prometheus import auth_from_dir, auth_from_secret, single_value


def text(waiting: float, success: float, ttft_fast: float, ttft_all: float) -> str:
    return f"""# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{model_name="m"}} {waiting}
# TYPE vllm:request_success_total counter
vllm:request_success_total{{finished_reason="stop"}} {success}
vllm:request_success_total{{finished_reason="length"}} 0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{le="0.1"}} {ttft_fast}
vllm:time_to_first_token_seconds_bucket{{le="0.5"}} {ttft_all}
vllm:time_to_first_token_seconds_bucket{{le="+Inf"}} {ttft_all}
vllm:time_to_first_token_seconds_count {ttft_all}
vllm:time_to_first_token_seconds_sum 1
"""


def test_gauge_is_summed_over_label_series() -> None:
    snap = series.parse(text(3, 0, 0, 0), at=0)
    assert series.total(snap, "vllm:num_requests_waiting") == 3


def test_counter_rate_is_per_second_over_the_window() -> None:
    a, b = series.parse(text(0, 10, 0, 0), at=0), series.parse(text(0, 70, 0, 0), at=30)
    assert series.counter_rate(a, b, "vllm:request_success_total") == 2


def test_counter_reset_counts_from_zero() -> None:
    a, b = series.parse(text(0, 100, 0, 0), at=0), series.parse(text(0, 30, 0, 0), at=30)
    assert series.counter_rate(a, b, "vllm:request_success_total") == 1


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    # 10 observations, 5 below 0.1 s and 5 in (0.1, 0.5]: p75 is half-way through the second bucket.
    assert series.quantile(0.75, {0.1: 5, 0.5: 10, math.inf: 10}) == pytest.approx(0.3)


def test_histogram_quantile_of_an_empty_window_is_absent() -> None:
    assert series.quantile(0.95, {0.1: 0, math.inf: 0}) is None


def test_histogram_window_uses_bucket_deltas() -> None:
    a, b = series.parse(text(0, 0, 100, 100), at=0), series.parse(text(0, 0, 100, 110), at=30)
    delta = series.bucket_delta(a, b, "vllm:time_to_first_token_seconds")
    assert delta == {0.1: 0, 0.5: 10, math.inf: 10}


WAITING = PodMetric("vllm:num_requests_waiting", target=10)
RATE = PodMetric("rps", target=1, metric="vllm:request_success_total")
TTFT = PodMetric("ttft", target=0.2, metric="vllm:time_to_first_token_seconds", quantile=0.5)
CFG = ScrapeConfig(window_s=60)


def history(**pods: list[tuple[float, str]]) -> History:
    h = History()
    for name, snaps in pods.items():
        for at, body in snaps:
            h.add(name, series.parse(body, at), 300)
    return h


def test_pods_not_ready_are_not_counted() -> None:
    h = history(a=[(0, text(4, 0, 0, 0))])
    pods = [PodTarget("a", "127.0.0.1", True), PodTarget("b", "127.0.0.2", False)]
    [sample] = evaluate(h, pods, [WAITING], 0, CFG, fresh={"a"})
    assert (sample.value, sample.missing_pods) == (4, 0)


def test_ready_pod_without_a_scrape_is_missing() -> None:
    h = history(a=[(0, text(4, 0, 0, 0))])
    pods = [PodTarget("a", "127.0.0.1", True), PodTarget("b", "127.0.0.2", True)]
    [sample] = evaluate(h, pods, [WAITING], 0, CFG, fresh={"a"})
    assert (sample.value, sample.missing_pods) == (4, 1)


def test_counter_needs_two_scrapes_so_the_first_tick_is_missing() -> None:
    h = history(a=[(0, text(0, 10, 0, 0))])
    [sample] = evaluate(h, [PodTarget("a", "127.0.0.1", True)], [RATE], 0, CFG, fresh={"a"})
    assert sample.value is None


def test_counter_rates_are_summed_over_pods() -> None:
    h = history(a=[(0, text(0, 0, 0, 0)), (30, text(0, 30, 0, 0))],
                b=[(0, text(0, 0, 0, 0)), (30, text(0, 60, 0, 0))])
    pods = [PodTarget("a", "x", True), PodTarget("b", "y", True)]
    [sample] = evaluate(h, pods, [RATE], 30, CFG, fresh={"a", "b"})
    assert sample.value == 3


def test_histogram_becomes_quantile_times_reporting_pods() -> None:
    h = history(a=[(0, text(0, 0, 0, 0)), (30, text(0, 0, 5, 10))],
                b=[(0, text(0, 0, 0, 0)), (30, text(0, 0, 5, 10))])
    pods = [PodTarget("a", "x", True), PodTarget("b", "y", True)]
    [sample] = evaluate(h, pods, [TTFT], 30, CFG, fresh={"a", "b"})
    assert sample.value == pytest.approx(0.1 * 2)


def test_terminating_pods_are_ignored() -> None:
    h = history(a=[(0, text(4, 0, 0, 0))])
    pods = [PodTarget("a", "x", True), PodTarget("b", "y", True, terminating=True)]
    [sample] = evaluate(h, pods, [WAITING], 0, CFG, fresh={"a"})
    assert sample.missing_pods == 0


@pytest.fixture
async def engine_like() -> AsyncIterator[tuple[str, int, list[float]]]:
    """A real HTTP server on loopback whose waiting count the test sets."""
    state = [7.0]

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=text(state[0], 0, 0, 0), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield "127.0.0.1", port, state
    await runner.cleanup()


async def test_scraper_reads_pods_over_http(engine_like: tuple[str, int, list[float]]) -> None:
    ip, port, _ = engine_like
    scraper = PodScraper(ScrapeConfig(port=port))
    [sample] = await scraper.collect([PodTarget("a", ip, True)], [WAITING], now=0)
    assert sample.value == 7


async def test_scraper_reports_an_unreachable_pod_as_missing(engine_like: tuple[str, int, list[float]]) -> None:
    ip, port, _ = engine_like
    scraper = PodScraper(ScrapeConfig(port=port, timeout_s=1))
    # Nothing listens on 127.0.0.3: the server is bound to 127.0.0.1 only.
    pods = [PodTarget("a", ip, True), PodTarget("b", "127.0.0.3", True)]
    [sample] = await scraper.collect(pods, [WAITING], now=0)
    assert (sample.value, sample.missing_pods) == (7, 1)


def test_prometheus_vector_with_one_sample_is_read_with_its_timestamp() -> None:
    assert single_value([{"metric": {}, "value": [1700000000.5, "12.5"]}]) == (12.5, 1700000000.5)


def test_prometheus_vector_with_two_samples_is_refused() -> None:
    assert single_value([{"value": [1, "1"]}, {"value": [1, "2"]}]) is None


def test_prometheus_scalar_result_is_read() -> None:
    assert single_value([1700000000, "3"]) == (3.0, 1700000000.0)


def test_bearer_token_from_a_secret() -> None:
    auth = auth_from_secret({"token": base64.b64encode(b"abc\n").decode()})
    assert auth.headers() == {"Authorization": "Bearer abc"}


def test_basic_auth_from_a_secret() -> None:
    data = {"username": base64.b64encode(b"u").decode(), "password": base64.b64encode(b"p").decode()}
    assert auth_from_secret(data).basic() == ("u", "p")


def test_secret_without_known_keys_is_rejected_naming_them() -> None:
    with pytest.raises(ValueError, match="'token' or 'username'"):
        auth_from_secret({"x": base64.b64encode(b"1").decode()})


def test_token_from_a_mounted_secret_directory(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("xyz\n")
    assert auth_from_dir(tmp_path).headers() == {"Authorization": "Bearer xyz"}


def test_empty_auth_directory_is_rejected_naming_the_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'token' or 'username'/'password'"):
        auth_from_dir(tmp_path)
