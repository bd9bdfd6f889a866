from __future__ import annotations

from pathlib import Path

import yaml

from caldera.localcluster import prometheus


def test_pod_targets_come_from_the_runner_file() -> None:
    config = yaml.safe_load(prometheus.render(Path("/c/run/scrape-targets.json"), "127.0.0.1:1"))
    [sd] = config["scrape_configs"][0]["file_sd_configs"]
    assert sd["files"] == ["/c/run/scrape-targets.json"]


def test_volcano_scheduler_metrics_are_scraped() -> None:
    config = yaml.safe_load(prometheus.render(Path("/t"), "127.0.0.1:4242"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "volcano-scheduler")
    assert job["static_configs"] == [{"targets": ["127.0.0.1:4242"]}]
