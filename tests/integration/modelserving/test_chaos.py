"""SIGKILL the controller at random points of create, scale and rollout; it must always converge.

A kill point is "after the controller's k-th write" (its `caldera_modelserving_writes_total`)
since the operation began, so every kill lands in the middle of real work. Every operation is
killed once early, once midway and once late in its writes (k drawn at random within each
phase; operations in random order each round): all of them, in every phase, on every run.
After each restart the namespace must hold exactly the pods, Services and PodGroups the spec
asks for: none missing, none orphaned, none duplicated, all on the update revision's template.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# Writes into an operation after which the controller is killed: early, midway, late. Past an
# operation's last write (a small scale), the kill lands after it finished instead.
PHASES = ((1, 3), (4, 7), (8, 12))


def _expected(ms: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    pods: set[str] = set()
    services: set[str] = set()
    groups = {f"sample-{i}" for i in range(ms["spec"]["replicas"])}
    for g in groups:
        for role in ms["spec"]["template"]["roles"]:
            for j in range(role["replicas"]):
                pods |= {f"{g}-{role['name']}-{j}-{k}" for k in range(1 + role["workerReplicas"])}
                if role["workerReplicas"]:
                    services.add(f"{g}-{role['name']}-{j}-0")
    return pods, services, groups


def _converged(env: Any) -> bool:
    ms = env.ms()
    pods, services, groups = _expected(ms)
    image = ms["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["image"]
    live = env.pods()
    return (env.available() and set(live) == pods and env.running(pods)
            and all(p["spec"]["containers"][0]["image"] == image for p in live.values())
            and set(env.services()) == services and set(env.podgroups()) == groups)


def _operations(env: Any) -> list[Callable[[], None]]:
    def create() -> None:
        env.custom.delete_namespaced_custom_object("workload.serving.volcano.sh", "v1alpha1", env.namespace,
                                                   "modelservings", "sample")
        env.wait_until("old ModelServing and its children gone", lambda: not env.pods() and not env.services()
                       and not env.podgroups() and not env.custom.list_namespaced_custom_object(
                           "workload.serving.volcano.sh", "v1alpha1", env.namespace, "modelservings")["items"],
                       timeout=120)
        env.apply(env.seed_manifest(replicas=random.choice([1, 2])))

    def scale_groups() -> None:
        env.scale(random.choice([1, 2, 3]) if env.ms()["spec"]["replicas"] != 3 else 1)

    def scale_roles() -> None:
        roles = env.ms()["spec"]["template"]["roles"]
        roles[0]["replicas"] = 3 if roles[0]["replicas"] != 3 else 1
        env.patch_ms({"spec": {"template": {"roles": roles}}})

    def rollout() -> None:
        env.set_image(f"registry.local/engine:v{random.randint(2, 10_000)}")

    return [create, scale_groups, scale_roles, rollout]


def test_controller_converges_after_sigkill_at_random_points(chaos_env: Any, chaos_controller: Any) -> None:
    rng_seed = random.randrange(1 << 30)
    random.seed(rng_seed)
    chaos_env.apply(chaos_env.seed_manifest())
    chaos_env.wait_until("initial convergence", lambda: _converged(chaos_env), timeout=180)
    ops = _operations(chaos_env)
    kills = 0
    for low, high in PHASES:
        for op in random.sample(ops, len(ops)):
            writes = chaos_controller.metric("caldera_modelserving_writes_total")
            op()
            kill_after = writes + random.randint(low, high)
            # When the operation needs fewer writes, the kill lands after it finished instead.
            with contextlib.suppress(TimeoutError):
                chaos_env.wait_until("the controller at the kill point", lambda k=kill_after: chaos_controller.metric(
                    "caldera_modelserving_writes_total") >= k, timeout=5, interval=0.01)
            chaos_controller.kill()
            chaos_controller.start()
            kills += 1
            chaos_env.wait_until(f"convergence after kill {kills} ({op.__name__}, writes {low}-{high}, seed {rng_seed})",
                                 lambda: _converged(chaos_env), timeout=180, interval=0.5)
    assert chaos_controller.starts == kills + 1 == len(PHASES) * len(ops) + 1
