"""Command line: ``caldera sim ARGS`` and ``python -m enginesim ARGS`` (same flags).

Flags follow vLLM's (``--model``, ``--served-model-name``, ``--max-num-seqs``, ...) so a
vLLM pod spec runs unchanged; SGLang spellings (``--model-path``, ``--page-size``,
``--max-running-requests``, ``--context-length``) are accepted too. Latency overrides
are in milliseconds, like llm-d-inference-sim's. Common engine flags that have no
meaning here (``--tensor-parallel-size``, ``--gpu-memory-utilization``,
``--trust-remote-code``, ... see ``IGNORED_VALUE_FLAGS``/``IGNORED_BOOL_FLAGS``) are
accepted and ignored; any other unknown flag is an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import click

from enginesim.config import (
    FAILURE_TYPES,
    FaultConfig,
    KVTransferConfig,
    SimConfig,
    parse_fake_metrics,
    parse_lora_module,
)
from enginesim.kv_events import KVEventsConfig
from enginesim.latency import PROFILES, get_profile

log = logging.getLogger(__name__)

IGNORED_VALUE_FLAGS = (
    "--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--gpu-memory-utilization",
    "--dtype", "--quantization", "--download-dir", "--load-format",
    "--kv-cache-dtype", "--distributed-executor-backend", "--swap-space", "--chat-template",
    "--tool-call-parser", "--revision", "--tokenizer-mode", "--uvicorn-log-level", "--max-lora-rank",
    "--max-cpu-loras", "--prefix-caching-hash-algo", "--cpu-offload-gb", "--limit-mm-per-prompt",
    "--tp", "--tp-size", "--dp", "--dp-size", "--mem-fraction-static", "--disaggregation-transfer-backend",
    "--disaggregation-ib-device", "--attention-backend", "--log-level-http",
    "--max-seq-len-to-capture", "--generation-config", "--reasoning-parser",
)
IGNORED_BOOL_FLAGS = (
    "--trust-remote-code", "--enforce-eager",
    "--disable-log-requests", "--disable-log-stats", "--enable-chunked-prefill", "--no-enable-chunked-prefill",
    "--enable-auto-tool-choice", "--disable-frontend-multiprocessing", "--enable-metrics",
    "--enable-cache-report", "--skip-server-warmup", "--enable-prompt-tokens-details",
    "--enable-log-requests", "--disable-fastapi-docs", "--enable-server-load-tracking",
)


# vLLM declares these with nargs="+": `--lora-modules a=/a b=/b` takes every value up to the
# next option. Click wants the flag repeated, so the command line is rewritten first.
MULTI_VALUE_FLAGS = ("--served-model-name", "--lora-modules", "--failure-types")


def expand_multi_value_flags(args: list[str]) -> list[str]:
    out: list[str] = []
    current: str | None = None
    for arg in args:
        if arg.startswith("-"):
            current = arg if arg in MULTI_VALUE_FLAGS else None
            if current is None:
                out.append(arg)
            continue
        if current is not None:
            out.extend((current, arg))
            continue
        out.append(arg)
    return out


class VllmStyleCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value_flags(args))


def _ignored(func: Callable[..., Any]) -> Callable[..., Any]:
    for flag in IGNORED_VALUE_FLAGS:
        func = click.option(flag, expose_value=False, hidden=True, type=str)(func)
    for flag in IGNORED_BOOL_FLAGS:
        func = click.option(flag, expose_value=False, hidden=True, is_flag=True)(func)
    return func


def _json_object(flag: str, text: str | None) -> dict[str, object] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: expected a JSON object")
    return value


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


@click.command(cls=VllmStyleCommand,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("positional", nargs=-1)
@click.option("--model", "--model-path", "model", help="Model name or path (vLLM --model, SGLang --model-path).")
@click.option("--served-model-name", multiple=True, help="Name(s) served on the API (vLLM's `--served-model-name a b`).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="HTTP port [default: 8000, 30000 in SGLang mode].")
@click.option("--mode", type=click.Choice(["vllm", "sglang"]), default="vllm", show_default=True,
              help="Which engine's API and metric names to present.")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="8b-h100", show_default=True)
@click.option("--time-per-prefill-token", "--prefill-time-per-token", type=float, help="ms per uncached prompt token.")
@click.option("--prefill-overhead", type=float, help="ms added to every prefill.")
@click.option("--inter-token-latency", type=float, help="ms between output tokens at batch size 1.")
@click.option("--inter-token-latency-std-dev", type=float, help="ms of ITL jitter per step (clamped +-70%).")
@click.option("--prefill-time-std-dev", type=float, help="ms of jitter on each request's prefill overhead.")
@click.option("--time-factor-under-load", type=float, help="ITL/prefill multiplier at a full batch (>= 1).")
@click.option("--max-num-seqs", "--max-running-requests", "max_num_seqs", type=int, help="Running batch limit.")
@click.option("--max-waiting-queue-length", type=int, default=1000, show_default=True,
              help="Waiting requests beyond this get HTTP 429.")
@click.option("--queue-full-status", type=click.Choice(["429", "503"]), default="429", show_default=True,
              help="HTTP status when the waiting queue is full (vLLM RFC #18826 proposes 503).")
@click.option("--max-model-len", "--context-length", "max_model_len", type=int)
@click.option("--max-num-batched-tokens", "--chunked-prefill-size", "max_num_batched_tokens", type=int,
              help="Token budget of one engine step (decodes + prefill chunks) [default: 8192].")
@click.option("--block-size", "--page-size", "block_size", type=int)
@click.option("--num-gpu-blocks", "--num-gpu-blocks-override", "--kv-cache-size", "num_gpu_blocks", type=int,
              help="KV cache capacity in blocks.")
@click.option("--kv-transfer-latency", type=float, help="ms fixed cost of a P/D KV transfer.")
@click.option("--kv-transfer-time-per-token", type=float, help="ms per transferred token.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated tokens.")
@click.option("--hash-seed", type=int, default=0, show_default=True, help="Seed of the block-hash chain root.")
@click.option("--tokenizer", default="whitespace", show_default=True,
              help="whitespace|bytes; any other value (an HF tokenizer path) selects whitespace.")
@click.option("--time-scale", type=float, default=1.0, show_default=True,
              help="Virtual seconds per real second (speeds the clock up for tests).")
@click.option("--default-max-tokens", type=int, default=256, show_default=True,
              help="Output length when a request sets no max_tokens.")
@click.option("--kv-events-config", help="vLLM KVEventsConfig JSON (publisher zmq, endpoint, topic, replay_endpoint).")
@click.option("--kv-events-encoding", type=click.Choice(["array", "map"]), default="array", show_default=True,
              help="array: msgspec array_like events; map: tagged-map events (vLLM >= PR #42892).")
@click.option("--enable-prefix-caching/--no-enable-prefix-caching", default=True, show_default=True,
              help="Block-level prefix caching (off: no cache hits and no KV events).")
@click.option("--disable-radix-cache", is_flag=True, help="SGLang spelling of --no-enable-prefix-caching.")
@click.option("--enable-lora", is_flag=True)
@click.option("--lora-modules", multiple=True, help="name=path or vLLM's JSON form; repeat for several.")
@click.option("--max-loras", type=int, default=1, show_default=True, help="Distinct adapters per running batch.")
@click.option("--kv-transfer-config", help='vLLM KVTransferConfig JSON, e.g. {"kv_connector":"NixlConnector"}.')
@click.option("--kv-transfer-timeout", type=float, default=480.0, show_default=True,
              help="Seconds a prefill keeps blocks for its remote decode / a decode waits for a bootstrap room.")
@click.option("--disaggregation-mode", type=click.Choice(["null", "prefill", "decode"]), default="null",
              show_default=True, help="SGLang P/D role.")
@click.option("--disaggregation-bootstrap-port", type=int, default=8998, show_default=True)
@click.option("--failure-rate", "--failure-injection-rate", "failure_rate", type=float, default=0.0,
              show_default=True, help="Fraction of requests failed on purpose (0-1; >1 read as percent).")
@click.option("--failure-types", multiple=True, help=f"Comma list or repeated; of {', '.join(FAILURE_TYPES)}.")
@click.option("--crash-after-tokens", type=int, help="Crash once a request has produced this many tokens.")
@click.option("--crash-mode", type=click.Choice(["exit", "abort"]), default="exit", show_default=True,
              help="exit: SIGKILL the process; abort: reset that connection.")
@click.option("--startup-delay", "--startup-duration", "startup_delay", type=float, default=0.0,
              show_default=True, help="Virtual seconds before /health turns 200.")
@click.option("--shutdown-grace-period", type=float, default=30.0, show_default=True,
              help="Seconds to finish in-flight requests after SIGTERM.")
@click.option("--api-key", help="Require this bearer token on the OpenAI endpoints.")
@click.option("--fake-metrics", help='Pin gauges, e.g. {"running-requests": 4, "waiting-requests": 10, '
              '"kv-cache-usage": 0.9} (llm-d-inference-sim); also POST /debug/fake_metrics.')
@click.option("--loop-lag-probe-interval", type=float, default=20.0, show_default=True,
              help="ms between event-loop lag probes (shorter = finer, costs idle CPU).")
@click.option("--show-hidden-metrics-for-version",
              help="Also expose deprecated metric names (vllm:gpu_cache_usage_perc, vllm:gpu_prefix_cache_*).")
@_ignored
def sim_command(positional: tuple[str, ...], **opts: Any) -> None:
    """Run the vLLM/SGLang-compatible engine simulator."""
    try:
        config = build_config(positional, opts)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    run(config)


def build_config(positional: tuple[str, ...], opts: dict[str, Any]) -> SimConfig:
    args = list(positional)
    if args and args[0] == "serve":
        args.pop(0)
    model = opts["model"]
    if args and model is None:
        model = args.pop(0)
    if args:
        raise ValueError(f"unexpected arguments {args}; repeat --served-model-name for several names")
    if model is None:
        raise ValueError("model: --model (or a positional model) is required")
    mode = opts["mode"]
    profile = get_profile(opts["profile"]).with_overrides(
        time_per_prefill_token=_ms(opts["time_per_prefill_token"]),
        prefill_overhead=_ms(opts["prefill_overhead"]),
        inter_token_latency=_ms(opts["inter_token_latency"]),
        time_factor_under_load=opts["time_factor_under_load"],
        inter_token_latency_std_dev=_ms(opts["inter_token_latency_std_dev"]),
        prefill_time_std_dev=_ms(opts["prefill_time_std_dev"]),
        max_num_seqs=opts["max_num_seqs"],
        max_model_len=opts["max_model_len"],
        max_num_batched_tokens=opts["max_num_batched_tokens"],
        block_size=opts["block_size"],
        num_gpu_blocks=opts["num_gpu_blocks"],
        kv_transfer_latency=_ms(opts["kv_transfer_latency"]),
        kv_transfer_time_per_token=_ms(opts["kv_transfer_time_per_token"]),
    )
    tokenizer = opts["tokenizer"]
    if tokenizer not in ("whitespace", "bytes"):
        log.warning("tokenizer %r is not simulated; using the whitespace tokenizer", tokenizer)
        tokenizer = "whitespace"
    failure_types = tuple(t.strip() for item in opts["failure_types"] for t in item.split(",") if t.strip())
    rate = opts["failure_rate"]
    faults = FaultConfig(
        failure_rate=rate / 100.0 if rate > 1 else rate,
        failure_types=failure_types or FAILURE_TYPES,
        crash_after_tokens=opts["crash_after_tokens"],
        crash_mode=opts["crash_mode"],
        startup_delay=opts["startup_delay"],
    )
    fake = _json_object("fake-metrics", opts["fake_metrics"])
    fake_metrics = parse_fake_metrics(fake) if fake is not None else None
    config = SimConfig(
        model=model,
        served_model_names=tuple(opts["served_model_name"]) or (model,),
        host=opts["host"],
        port=opts["port"] if opts["port"] is not None else (30000 if mode == "sglang" else 8000),
        profile=profile,
        mode=mode,
        tokenizer=tokenizer,
        seed=opts["seed"],
        hash_seed=opts["hash_seed"],
        time_scale=opts["time_scale"],
        max_waiting_queue_length=opts["max_waiting_queue_length"],
        queue_full_status=int(opts["queue_full_status"]),
        enable_prefix_caching=opts["enable_prefix_caching"] and not opts["disable_radix_cache"],
        default_max_tokens=opts["default_max_tokens"],
        kv_events=KVEventsConfig.parse(opts["kv_events_config"]) if opts["kv_events_config"] else KVEventsConfig(),
        kv_events_encoding=opts["kv_events_encoding"],
        enable_lora=opts["enable_lora"],
        lora_modules=tuple(parse_lora_module(m) for m in opts["lora_modules"]),
        max_loras=opts["max_loras"],
        kv_transfer=KVTransferConfig.parse(opts["kv_transfer_config"]) if opts["kv_transfer_config"] else None,
        kv_transfer_timeout=opts["kv_transfer_timeout"],
        disaggregation_mode=opts["disaggregation_mode"],
        bootstrap_port=opts["disaggregation_bootstrap_port"],
        faults=faults,
        shutdown_grace_period=opts["shutdown_grace_period"],
        api_key=opts["api_key"],
        loop_lag_probe_interval=opts["loop_lag_probe_interval"] / 1000.0,
        fake_metrics=fake_metrics,
        show_hidden_metrics_for_version=opts["show_hidden_metrics_for_version"],
    )
    config.validate()
    return config


def run(config: SimConfig) -> None:
    from enginesim.server import serve

    log.debug("enginesim configuration: %s", config)
    try:
        import uvloop

        uvloop.run(serve(config))
    except ImportError:
        asyncio.run(serve(config))
