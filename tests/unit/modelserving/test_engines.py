from __future__ import annotations

import pytest

from modelserving.engines import Launch, LaunchError, commands, role


def test_sglang_nodes_rendezvous_on_the_entry_pod() -> None:
    cmds = commands(Launch("sglang", "deepseek-ai/DeepSeek-V3", nodes=2, gpus_per_node=8, tensor_parallel_size=16))
    assert cmds.worker == cmds.entry
    joined = " ".join(cmds.entry)
    assert "--dist-init-addr $(ENTRY_ADDRESS):5000" in joined
    assert "--nnodes $(GROUP_SIZE) --node-rank $(WORKER_INDEX)" in joined
    assert "--tp 16" in joined


def test_vllm_ray_head_waits_for_the_whole_group_and_workers_join_it() -> None:
    cmds = commands(Launch("vllm-ray", "deepseek-ai/DeepSeek-V3", nodes=2, tensor_parallel_size=16))
    assert cmds.entry[:2] == ["sh", "-c"]
    assert "ray start --head --port=6379" in cmds.entry[2]
    assert "GROUP_SIZE" in cmds.entry[2]
    assert "--distributed-executor-backend ray" in cmds.entry[2]
    assert cmds.worker == ["sh", "-c", 'exec ray start --address="$ENTRY_ADDRESS:6379" --block']


def test_vllm_data_parallel_workers_start_at_their_rank() -> None:
    cmds = commands(Launch("vllm-dp", "m", nodes=2, gpus_per_node=8, data_parallel_size=16))
    assert "--data-parallel-address" in cmds.entry and "$(ENTRY_ADDRESS)" in cmds.entry
    assert cmds.worker is not None
    assert "--headless" in cmds.worker[2]
    assert "--data-parallel-start-rank $((WORKER_INDEX * 8))" in cmds.worker[2]


def test_single_node_engine_has_no_worker_command() -> None:
    assert commands(Launch("vllm-ray", "m", nodes=1, tensor_parallel_size=8)).worker is None


def test_nixl_prefill_gets_the_producer_kv_transfer_config() -> None:
    cmds = commands(Launch("vllm-ray", "m", gpus_per_node=1, kv_transfer="nixl", kv_role="kv_producer"))
    assert '{"kv_connector":"NixlConnector","kv_role":"kv_producer"}' in cmds.entry


def test_layout_that_does_not_fill_the_gpus_is_rejected() -> None:
    with pytest.raises(LaunchError, match="tensor_parallel_size"):
        commands(Launch("sglang", "m", nodes=2, gpus_per_node=8, tensor_parallel_size=8))


def test_role_renders_entry_and_worker_templates() -> None:
    r = role("decode", Launch("sglang", "m", nodes=2, tensor_parallel_size=16), image="lmsysorg/sglang:latest")
    assert r["workerReplicas"] == 1
    assert "workerTemplate" in r
