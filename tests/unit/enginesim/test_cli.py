"""Command-line parsing: vLLM/SGLang spellings, ignored engine flags, clear errors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner

from caldera.cli import cli
from enginesim.cli import build_config, sim_command
from enginesim.config import SimConfig


def parse(*args: str) -> SimConfig:
    ctx = sim_command.make_context("sim", list(args))
    params: dict[str, Any] = dict(ctx.params)
    return build_config(params.pop("positional"), params)


def test_profile_defaults_apply() -> None:
    cfg = parse("--model", "m", "--profile", "70b-h100-tp8")
    assert (cfg.profile.inter_token_latency, cfg.profile.prefill_overhead) == (0.025, 0.080)
    assert (cfg.profile.time_per_prefill_token, cfg.profile.max_num_seqs) == (0.0005, 64)


def test_latency_overrides_are_milliseconds() -> None:
    cfg = parse("--model", "m", "--inter-token-latency", "20", "--prefill-overhead", "5",
                "--time-per-prefill-token", "0.1")
    assert (cfg.profile.inter_token_latency, cfg.profile.prefill_overhead) == (0.020, 0.005)
    assert cfg.profile.time_per_prefill_token == pytest.approx(0.0001)


def test_vllm_pod_spec_flags_are_accepted() -> None:
    cfg = parse("serve", "meta-llama/Llama-3.1-8B", "--tensor-parallel-size", "8", "--gpu-memory-utilization",
                "0.9", "--trust-remote-code", "--enable-prefix-caching", "--served-model-name", "llama")
    assert cfg.model == "meta-llama/Llama-3.1-8B"
    assert cfg.served_model_names == ("llama",)


def test_sglang_spellings_map_to_the_same_settings() -> None:
    cfg = parse("--mode", "sglang", "--model-path", "m", "--page-size", "32", "--max-running-requests", "8",
                "--context-length", "4096", "--tp", "2")
    assert (cfg.profile.block_size, cfg.profile.max_num_seqs, cfg.profile.max_model_len) == (32, 8, 4096)
    assert cfg.port == 30000


def test_served_model_name_defaults_to_the_model() -> None:
    assert parse("--model", "m").served_model_names == ("m",)


def test_unknown_flag_is_an_error() -> None:
    with pytest.raises(click.NoSuchOption):
        parse("--model", "m", "--no-such-flag")


def test_missing_model_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="model"):
        parse()


def test_bad_kv_events_config_names_the_flag() -> None:
    with pytest.raises(ValueError, match="kv-events-config"):
        parse("--model", "m", "--kv-events-config", "{bad")


def test_lora_modules_need_enable_lora() -> None:
    with pytest.raises(ValueError, match="enable-lora"):
        parse("--model", "m", "--lora-modules", "a=/a")


def test_failure_rate_percent_and_types_comma_list() -> None:
    cfg = parse("--model", "m", "--failure-rate", "25", "--failure-types", "rate_limit,server_error")
    assert cfg.faults.failure_rate == 0.25
    assert cfg.faults.failure_types == ("rate_limit", "server_error")


def test_unknown_failure_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="failure-types"):
        parse("--model", "m", "--failure-types", "meteor")


def test_caldera_sim_exposes_the_same_flags() -> None:
    result = CliRunner().invoke(cli, ["sim", "--help"])
    assert result.exit_code == 0
    assert "--max-num-seqs" in result.output and "--kv-events-config" in result.output


def test_python_dash_m_rejects_unknown_flags_clearly() -> None:
    proc = subprocess.run([sys.executable, "-m", "enginesim", "--model", "m", "--bogus"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert "No such option '--bogus'" in proc.stderr


def test_prefix_caching_can_be_disabled_with_either_spelling() -> None:
    assert parse("--model", "m").enable_prefix_caching
    assert not parse("--model", "m", "--no-enable-prefix-caching").enable_prefix_caching
    assert not parse("--model", "m", "--disable-radix-cache").enable_prefix_caching


def test_vllm_multi_value_flags_take_every_value_up_to_the_next_option() -> None:
    cfg = parse("--model", "m", "--served-model-name", "a", "b", "--enable-lora", "--lora-modules", "x=/x", "y=/y",
                "--max-loras", "2")
    assert cfg.served_model_names == ("a", "b")
    assert [m.name for m in cfg.lora_modules] == ["x", "y"]


def test_bad_fake_metrics_are_a_usage_error() -> None:
    with pytest.raises(ValueError, match="fake-metrics"):
        parse("--model", "m", "--fake-metrics", '{"kv-cache-usage": 3}')
