"""Launch commands for multi-node engine pods, derived from the env the controller injects.

Every container of a role replica gets GROUP_SIZE (1 + workerReplicas), ENTRY_ADDRESS
(`<entry pod>.<namespace>`, resolvable through the role replica's headless Service) and
WORKER_INDEX (0 on the entry pod). Kubernetes expands `$(VAR)` in `command`/`args` from the
container's env, so most commands need no shell. See docs/engines.md.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Literal

Engine = Literal["vllm-ray", "vllm-dp", "sglang"]
ENGINES: tuple[str, ...] = ("vllm-ray", "vllm-dp", "sglang")
KvRole = Literal["kv_producer", "kv_consumer", "kv_both"]

RAY_PORT = 6379
SGLANG_DIST_PORT = 5000
VLLM_DP_RPC_PORT = 13345


class LaunchError(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True)
class Launch:
    """One role's engine: what runs on each of its `nodes` pods (1 entry + nodes-1 workers)."""

    engine: Engine
    model: str
    nodes: int = 1
    gpus_per_node: int = 8
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1  # vllm-dp: total DP ranks, spread evenly over the nodes
    port: int = 8000
    served_model_name: str | None = None
    kv_transfer: Literal["nixl"] | None = None  # prefill/decode disaggregation
    kv_role: KvRole = "kv_both"
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise LaunchError("engine", f"must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.nodes < 1:
            raise LaunchError("nodes", f"must be at least 1, got {self.nodes}")
        gpus = self.nodes * self.gpus_per_node
        if self.engine == "vllm-dp":
            if self.data_parallel_size % self.nodes:
                raise LaunchError("data_parallel_size",
                                  f"{self.data_parallel_size} ranks do not spread evenly over {self.nodes} nodes")
            used = self.data_parallel_size * self.tensor_parallel_size
        else:
            used = self.tensor_parallel_size * self.pipeline_parallel_size
        if used != gpus:
            raise LaunchError("tensor_parallel_size",
                              f"the parallel layout uses {used} GPUs but {self.nodes} nodes x {self.gpus_per_node} "
                              f"GPUs = {gpus}")

    @property
    def worker_replicas(self) -> int:
        return self.nodes - 1


@dataclass(frozen=True)
class Commands:
    """Container `command` for the entry pod and for every worker pod (None: no workers)."""

    entry: list[str]
    worker: list[str] | None
    ports: dict[str, int]


def _common_vllm(launch: Launch) -> list[str]:
    args = ["--port", str(launch.port)]
    if launch.served_model_name:
        args += ["--served-model-name", launch.served_model_name]
    if launch.kv_transfer == "nixl":
        args += ["--kv-transfer-config",
                 json.dumps({"kv_connector": "NixlConnector", "kv_role": launch.kv_role}, separators=(",", ":"))]
    return args + list(launch.extra_args)


def commands(launch: Launch) -> Commands:
    """Entry and worker commands for `launch` (raises LaunchError naming the bad field)."""
    launch.validate()
    if launch.engine == "vllm-ray":
        serve = ["vllm", "serve", launch.model,
                 "--tensor-parallel-size", str(launch.tensor_parallel_size),
                 "--pipeline-parallel-size", str(launch.pipeline_parallel_size)]
        if launch.nodes == 1:
            return Commands(serve + _common_vllm(launch), None, {"http": launch.port})
        serve += ["--distributed-executor-backend", "ray", *_common_vllm(launch)]
        # The head waits until all GROUP_SIZE nodes joined before vLLM shards the model over them.
        wait_nodes = ("until python3 -c 'import os, ray; ray.init(address=\"auto\", logging_level=\"ERROR\"); "
                      "raise SystemExit(sum(n[\"Alive\"] for n in ray.nodes()) < int(os.environ[\"GROUP_SIZE\"]))'; "
                      "do sleep 2; done")
        leader = (f"ray start --head --port={RAY_PORT} && {wait_nodes} && exec "
                  + " ".join(shlex.quote(a) for a in serve))
        worker = f"exec ray start --address=\"$ENTRY_ADDRESS:{RAY_PORT}\" --block"
        return Commands(["sh", "-c", leader], ["sh", "-c", worker], {"http": launch.port, "ray": RAY_PORT})
    if launch.engine == "vllm-dp":
        local = launch.data_parallel_size // launch.nodes
        layout = ["vllm", "serve", launch.model,
                  "--tensor-parallel-size", str(launch.tensor_parallel_size),
                  "--data-parallel-size", str(launch.data_parallel_size),
                  "--data-parallel-size-local", str(local),
                  "--data-parallel-rpc-port", str(VLLM_DP_RPC_PORT)]
        entry = [*layout, "--data-parallel-address", "$(ENTRY_ADDRESS)", *_common_vllm(launch)]
        if launch.nodes == 1:
            return Commands(entry, None, {"http": launch.port, "dp-rpc": VLLM_DP_RPC_PORT})
        # Workers run engine cores only, from rank WORKER_INDEX x local ranks (shell arithmetic).
        worker_line = " ".join(shlex.quote(a) for a in layout) + (
            f" --data-parallel-address \"$ENTRY_ADDRESS\" --headless"
            f" --data-parallel-start-rank $((WORKER_INDEX * {local}))")
        return Commands(entry, ["sh", "-c", "exec " + worker_line], {"http": launch.port, "dp-rpc": VLLM_DP_RPC_PORT})
    # SGLang: every node runs the same command; rank 0 serves HTTP.
    cmd = ["python3", "-m", "sglang.launch_server", "--model-path", launch.model,
           "--tp", str(launch.tensor_parallel_size), "--port", str(launch.port), "--host", "0.0.0.0"]
    if launch.pipeline_parallel_size > 1:
        cmd += ["--pp-size", str(launch.pipeline_parallel_size)]
    if launch.nodes > 1:
        cmd += ["--dist-init-addr", f"$(ENTRY_ADDRESS):{SGLANG_DIST_PORT}",
                "--nnodes", "$(GROUP_SIZE)", "--node-rank", "$(WORKER_INDEX)"]
    if launch.served_model_name:
        cmd += ["--served-model-name", launch.served_model_name]
    if launch.kv_transfer == "nixl":
        mode = {"kv_producer": "prefill", "kv_consumer": "decode"}.get(launch.kv_role, "null")
        cmd += ["--disaggregation-mode", mode, "--disaggregation-transfer-backend", "nixl"]
    cmd += list(launch.extra_args)
    return Commands(cmd, cmd if launch.nodes > 1 else None, {"http": launch.port, "dist": SGLANG_DIST_PORT})


def role(name: str, launch: Launch, image: str, replicas: int = 1) -> dict[str, object]:
    """A ModelServing role (entry + worker templates) running `launch` on `launch.nodes` pods each."""
    cmds = commands(launch)

    def template(command: list[str]) -> dict[str, object]:
        return {"spec": {"containers": [{
            "name": "engine",
            "image": image,
            "command": command,
            "ports": [{"name": n, "containerPort": p} for n, p in cmds.ports.items()],
            "resources": {"limits": {"nvidia.com/gpu": str(launch.gpus_per_node)},
                          "requests": {"nvidia.com/gpu": str(launch.gpus_per_node)}},
        }]}}

    out: dict[str, object] = {"name": name, "replicas": replicas, "workerReplicas": launch.worker_replicas,
                              "entryTemplate": template(cmds.entry)}
    if cmds.worker is not None:
        out["workerTemplate"] = template(cmds.worker)
    return out
