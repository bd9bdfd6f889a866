"""Placement benchmark on a real cluster: real vc-scheduler vs the re-implementation vs Caldera's plan.

`benchmarks/placement.py` compares Caldera's plan with `placement.volcano_baseline`, a Python
re-implementation of Volcano's allocation. This script measures real Volcano on the same
cluster shape and the same stream: it brings up a local cluster (`rack-256`: 256 KWOK nodes x
8 GPUs, 32 tier-1 leaves of 8 nodes, 4 tier-2 spines, 1 tier-3 core) in its own directory,
pre-occupies GPUs with bound filler pods (`nodeName` set, one per used node) in the patterns of
`benchmarks/placement.py` (its generators, same seeds), then submits that benchmark's mixed
stream of ServingGroups as real Volcano PodGroups, one at a time, in order: minMember, hard
groupPolicy tier 2, one subGroupPolicy per role with hard rolePolicy tier 1 (the shape
`modelserving.desired.podgroup_spec` produces). Each gang is waited for until every pod is bound
or it stays unbound past `--pending-seconds`; an unbound gang is then deleted, as the pure
baselines skip it (left in place, its minResources would stay counted as Inqueue by the
proportion plugin and hold back later gangs). The stream stops after `--stop-after` consecutive
unbound gangs or `--max-gangs`; the submitted prefix is the stream every other column plans.

Per gang it also asks the re-implementation, on a snapshot read from the cluster just before
submission, what Volcano will do (bound or not, which tier-1 leaf per role replica, which tier-2
spine), and counts agreements: that is the fidelity of the baseline.

Columns per scenario: `realVolcano`, `reimplementation` (local cluster's plugin arguments),
`calderaWindow16`, `calderaOneBatch` (pure `solve()`, as `benchmarks/placement.py`),
`upperBound`, `fidelity`; with `--gate-path` also `calderaGatePath`: the same gangs as
ModelServings through `caldera controller --placement=caldera` and the real vc-scheduler. (Found
with it, on Volcano v1.14.1: pods that share a `volcano.sh/task-spec`, as the pods of one
ModelServing role replica do, and are pinned to different nodes stay Pending, so multi-pod role
replicas released by the gate are not bound.)

Run: .venv/bin/python benchmarks/placement_cluster.py [--dir /tmp/caldera-bench-rack256] [--keep]
"""

from __future__ import annotations

import os
import sys

# Keep this directory (which holds placement.py, a script) from shadowing the `placement` package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import importlib.util
import json
import random
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from kubernetes import client

from caldera.localcluster import processes, wait
from caldera.localcluster.cluster import Cluster
from caldera.localcluster.session import LocalCluster
from modelserving import labels as L
from placement.model import Gang
from placement.release import CONDITION_TYPE, is_gated
from placement.snapshot import Snapshot
from placement.solver import SolveOptions, relaxation_bound, solve
from placement.volcano_baseline import VolcanoConfig, volcano_allocate
from topology.kube import topology_from_objects
from topology.resources import CPU, GPU, MEMORY, Resources

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = Path("/tmp/caldera-bench-rack256")
FILLER_SCHEDULER = "caldera-bench-filler"  # no scheduler serves it: fillers are bound by nodeName
IMAGE = "registry.local/bench:v1"  # not a process image: KWOK makes the pod Running at once
SCENARIOS = (("chunks", 0.0), ("nodes", 0.3), ("chunks", 0.6))


def load_pure_benchmark() -> ModuleType:
    """benchmarks/placement.py (a script named like the package), for its scenario generators."""
    spec = importlib.util.spec_from_file_location("caldera_benchmark_placement", HERE / "placement.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------- manifests
def quantities(requests: Resources) -> dict[str, str]:
    out = {"cpu": f"{requests.get(CPU, 0)}m", "memory": str(requests.get(MEMORY, 0))}
    if requests.get(GPU, 0):
        out[GPU] = str(requests[GPU])
    return out


def container(requests: Resources) -> dict[str, Any]:
    gpu = {GPU: str(requests[GPU])} if requests.get(GPU, 0) else {}
    # Extended resources need limits equal to their requests.
    return {"name": "main", "image": IMAGE, "resources": {"requests": quantities(requests), "limits": gpu}}


def filler_pod(node: str, requests: Resources) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"fill-{node}", "labels": {"caldera.dev/bench": "filler"}},
            "spec": {"nodeName": node, "schedulerName": FILLER_SCHEDULER, "containers": [container(requests)],
                     "terminationGracePeriodSeconds": 0}}


def gang_objects(gang: Gang) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Volcano PodGroup and its pods for `gang`, shaped like a ServingGroup of Kthena/Caldera."""
    minimum: dict[str, int] = {}
    for res, value in ((CPU, gang.demand.get(CPU, 0)), (MEMORY, gang.demand.get(MEMORY, 0)),
                       (GPU, gang.demand.get(GPU, 0))):
        minimum[res] = value
    spec: dict[str, Any] = {
        "minMember": len(gang.pods),
        "minResources": quantities(minimum),
    }
    if gang.group_policy is not None:
        spec["networkTopology"] = {"mode": gang.group_policy.mode,
                                   "highestTierAllowed": gang.group_policy.highest_tier_allowed}
    roles: dict[str, list[int]] = {}
    for rr in gang.role_replicas:
        roles.setdefault(rr.role, []).append(len(rr.pods))
    policies = []
    for role, sizes in roles.items():
        if len(set(sizes)) != 1:
            raise ValueError(f"gang {gang.name}: role {role!r} has replicas of different sizes {sizes}; "
                             "a subGroupPolicy has one subGroupSize")
        policy: dict[str, Any] = {
            "name": role,
            "labelSelector": {"matchLabels": {L.NAME_LABEL: gang.name, L.ROLE_LABEL: role}},
            "matchLabelKeys": [L.ROLE_ID_LABEL],
            "subGroupSize": sizes[0],
            "minSubGroups": len(sizes),
        }
        role_policy = gang.policy_for(role)
        if role_policy is not None:
            policy["networkTopology"] = {"mode": role_policy.mode,
                                         "highestTierAllowed": role_policy.highest_tier_allowed}
        policies.append(policy)
    spec["subGroupPolicy"] = policies
    podgroup = {"apiVersion": f"{L.PODGROUP_GROUP}/{L.PODGROUP_VERSION}", "kind": "PodGroup",
                "metadata": {"name": gang.name, "labels": {L.NAME_LABEL: gang.name}}, "spec": spec}
    pods = []
    for rr in gang.role_replicas:
        for pod in rr.pods:
            pods.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": pod.name,
                    "labels": {L.NAME_LABEL: gang.name, L.GROUP_NAME_LABEL: gang.name, L.ROLE_LABEL: rr.role,
                               L.ROLE_ID_LABEL: rr.name},
                    "annotations": {L.KUBE_GROUP_NAME_ANNOTATION: gang.name, L.TASK_SPEC_ANNOTATION: rr.name},
                },
                "spec": {"schedulerName": "volcano", "containers": [container(pod.requests)],
                         "terminationGracePeriodSeconds": 0},
            })
    return podgroup, pods


# ---------------------------------------------------------------------------------- cluster I/O
class Kube:
    """The few reads and writes the benchmark needs, against one cluster."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def close(self) -> None:
        self.api.close()

    def _json(self, response: Any) -> Any:
        return json.loads(response.data)

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._json(self.core.list_node(_preload_content=False))["items"])

    def hypernodes(self) -> list[dict[str, Any]]:
        listed: Any = self.custom.list_cluster_custom_object("topology.volcano.sh", "v1alpha1", "hypernodes")
        return list(listed["items"])

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        response = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        return list(self._json(response)["items"])

    def snapshot(self, namespace: str | None = None) -> Snapshot:
        """The cluster as the scheduler sees it: nodes, HyperNodes and the pods holding capacity."""
        pods = self.pods(namespace) if namespace else []
        return Snapshot.from_topology(topology_from_objects(self.nodes(), self.hypernodes(), pods))

    def create_namespace(self, name: str) -> None:
        body: Any = {"metadata": {"name": name, "labels": {"caldera.dev/bench": "true"}}}
        self.core.create_namespace(body)

    def create_pod(self, namespace: str, pod: Any) -> None:
        self.core.create_namespaced_pod(namespace, pod)

    def create_podgroup(self, namespace: str, podgroup: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(L.PODGROUP_GROUP, L.PODGROUP_VERSION, namespace,
                                                    L.PODGROUP_PLURAL, podgroup)

    def delete_gang(self, namespace: str, name: str) -> None:
        self.core.delete_collection_namespaced_pod(namespace, label_selector=f"{L.NAME_LABEL}={name}",
                                                   grace_period_seconds=0)
        self.custom.delete_namespaced_custom_object(L.PODGROUP_GROUP, L.PODGROUP_VERSION, namespace,
                                                    L.PODGROUP_PLURAL, name)

    def clear_namespace(self, namespace: str) -> None:
        """Force-delete every pod (KWOK pods need no kubelet to finish) and PodGroup, then the namespace."""
        self.core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        self.custom.delete_collection_namespaced_custom_object(L.PODGROUP_GROUP, L.PODGROUP_VERSION, namespace,
                                                               L.PODGROUP_PLURAL)
        wait.until(lambda: not self.pods(namespace), 120, f"pods of {namespace} deleted", 0.5)
        self.core.delete_namespace(namespace, propagation_policy="Background")


# ---------------------------------------------------------------------------------- real Volcano
@dataclass
class GangOutcome:
    name: str
    bound: bool
    assignments: dict[str, str]  # pod -> node (all pods when bound, the bound ones otherwise)
    seconds: float
    before: Snapshot  # the cluster read just before submission
    predicted: dict[str, str] = field(default_factory=dict)  # the re-implementation's, empty if unplaceable

    @property
    def predicted_bound(self) -> bool:
        return bool(self.predicted)


def occupancy_pods(snapshot: Snapshot, pod_requests: Callable[[int], Resources]) -> list[dict[str, Any]]:
    """One bound filler pod per node holding the GPUs `snapshot` has taken on it."""
    pods = []
    for node in sorted(snapshot.nodes):
        used = snapshot.nodes[node].allocatable.get(GPU, 0) - snapshot.free[node].get(GPU, 0)
        if used > 0:
            pods.append(filler_pod(node, pod_requests(used)))
    return pods


# Taints the node lifecycle controller puts on new or unhealthy nodes (`TaintNodesByCondition`).
LIFECYCLE_TAINT_PREFIX = "node.kubernetes.io/"


def unsettled_nodes(nodes: Sequence[dict[str, Any]]) -> list[str]:
    """Nodes not yet Ready or still carrying a lifecycle taint (e.g. `node.kubernetes.io/not-ready`).

    A freshly started cluster lists its KWOK nodes Ready while kube-controller-manager is still
    lifting the not-ready taints, a few dozen nodes every few seconds. A snapshot read then shows
    those nodes as unusable to the pure planners, while vc-scheduler, running later, sees them free.
    """
    out = []
    for node in nodes:
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        taints = (node.get("spec") or {}).get("taints") or []
        if not ready or any(str(t.get("key", "")).startswith(LIFECYCLE_TAINT_PREFIX) for t in taints):
            out.append(node["metadata"]["name"])
    return out


def wait_nodes_settled(kube: Kube, timeout: float = 300.0) -> None:
    wait.until(lambda: not unsettled_nodes(kube.nodes()), timeout, "every node Ready without lifecycle taints", 1.0)


def fill(kube: Kube, namespace: str, pods: Sequence[dict[str, Any]]) -> None:
    for pod in pods:
        kube.create_pod(namespace, pod)

    def running() -> bool:
        listed = kube.pods(namespace, "caldera.dev/bench=filler")
        return len(listed) == len(pods) and all((p.get("status") or {}).get("phase") == "Running" for p in listed)

    wait.until(running, 300, f"{len(pods)} filler pods Running", 0.5)


def submit(kube: Kube, namespace: str, gang: Gang, pending_seconds: float) -> tuple[bool, dict[str, str]]:
    """Create the gang's PodGroup and pods; wait until all are bound or `pending_seconds` pass."""
    podgroup, pods = gang_objects(gang)
    return submit_objects(kube, namespace, podgroup, pods, pending_seconds)


def submit_objects(kube: Kube, namespace: str, podgroup: dict[str, Any], pods: Sequence[dict[str, Any]],
                   pending_seconds: float) -> tuple[bool, dict[str, str]]:
    """`submit` for ready-made objects (pods labelled with the PodGroup's name): (all bound, pod -> node)."""
    name = podgroup["metadata"]["name"]
    kube.create_podgroup(namespace, podgroup)
    for pod in pods:
        kube.create_pod(namespace, pod)
    selector = f"{L.NAME_LABEL}={name}"

    def bound() -> dict[str, str]:
        listed = kube.pods(namespace, selector)
        nodes = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in listed}
        return nodes if len(nodes) == len(pods) and all(nodes.values()) else {}

    try:
        return True, wait.until(bound, pending_seconds, f"gang {name} bound", 0.25)
    except TimeoutError:
        listed = kube.pods(namespace, selector)
        partial = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in listed if p["spec"].get("nodeName")}
        kube.delete_gang(namespace, name)
        return False, partial


def run_real(kube: Kube, namespace: str, gangs: Sequence[Gang], pending_seconds: float, stop_after: int,
             max_gangs: int, config: VolcanoConfig) -> list[GangOutcome]:
    outcomes: list[GangOutcome] = []
    misses = 0
    for gang in gangs[:max_gangs]:
        before = kube.snapshot(namespace)
        predicted = volcano_allocate(before, [gang], config).get(gang.name, {})
        t0 = time.perf_counter()
        ok, assignments = submit(kube, namespace, gang, pending_seconds)
        outcomes.append(GangOutcome(gang.name, ok, assignments, round(time.perf_counter() - t0, 2), before,
                                    predicted))
        print(json.dumps({"gang": gang.name, "gpus": gang.gpus, "bound": ok, "predictedBound": bool(predicted),
                          "seconds": outcomes[-1].seconds}), file=sys.stderr, flush=True)
        misses = 0 if ok else misses + 1
        if misses >= stop_after:
            break
    return outcomes


def fidelity(gangs: Sequence[Gang], outcomes: Sequence[GangOutcome]) -> dict[str, Any]:
    """How often the re-implementation, asked just before each submission, predicted real Volcano.

    Domain choices are compared exactly and up to symmetry: Volcano breaks ties between equally
    scored HyperNodes and nodes at random, so a leaf (spine) with the same free GPUs per node
    (per leaf) as the predicted one is an equally good answer, not a disagreement.
    """
    by_name = {g.name: g for g in gangs}
    counts = {"gangs": len(outcomes), "boundAgreement": 0, "bothBound": 0, "spanningGangs": 0,
              "groupTierAgreement": 0, "tier2DomainExact": 0, "tier2DomainUpToSymmetry": 0, "roleReplicas": 0,
              "tier1LeafExact": 0, "tier1LeafUpToSymmetry": 0}
    disagreements: list[dict[str, Any]] = []
    for out in outcomes:
        if out.bound == out.predicted_bound:
            counts["boundAgreement"] += 1
        else:
            disagreements.append({"gang": out.name, "gpus": by_name[out.name].gpus, "realBound": out.bound,
                                  "predictedBound": out.predicted_bound})
        if not (out.bound and out.predicted_bound):
            continue
        counts["bothBound"] += 1
        snap = out.before
        real_nodes, pred_nodes = list(out.assignments.values()), list(out.predicted.values())
        if snap.lca_tier(real_nodes) >= 2 or snap.lca_tier(pred_nodes) >= 2:
            # The tier-2 choice only stands on its own for gangs that span leaves; the others
            # follow their leaf.
            counts["spanningGangs"] += 1
            real_spine, pred_spine = domain_at(snap, real_nodes, 2), domain_at(snap, pred_nodes, 2)
            counts["tier2DomainExact"] += real_spine == pred_spine
            counts["tier2DomainUpToSymmetry"] += domain_profile(snap, real_spine) == domain_profile(snap, pred_spine)
            counts["groupTierAgreement"] += snap.lca_tier(real_nodes) == snap.lca_tier(pred_nodes)
        for rr in by_name[out.name].role_replicas:
            counts["roleReplicas"] += 1
            real_leaves = sorted({snap.leaf_of[out.assignments[p.name]] for p in rr.pods})
            pred_leaves = sorted({snap.leaf_of[out.predicted[p.name]] for p in rr.pods})
            counts["tier1LeafExact"] += real_leaves == pred_leaves
            counts["tier1LeafUpToSymmetry"] += (sorted(domain_profile(snap, d) for d in real_leaves)
                                                == sorted(domain_profile(snap, d) for d in pred_leaves))
    return {**counts, "disagreements": disagreements}


def domain_at(snapshot: Snapshot, nodes: Sequence[str], tier: int) -> str:
    """The domain of `tier` holding all of `nodes` (their LCA when that is higher)."""
    lca = snapshot.lca(nodes)
    if snapshot.tier[lca] >= tier:
        return lca
    anchor = snapshot.anchor(snapshot.leaf_of[nodes[0]], tier)
    return anchor if anchor is not None else lca


def domain_profile(snapshot: Snapshot, domain: str) -> tuple[Any, ...]:
    """What Volcano's scores see of a domain: free GPUs per node of each leaf, names left out."""
    return tuple(sorted(tuple(sorted(snapshot.free[n].get(GPU, 0) for n in snapshot.leaf_nodes[leaf]))
                        for leaf in snapshot.leaves_under[domain]))


# ---------------------------------------------------------------------------------- Caldera's gate path
MODELSERVING_API = ("workload.serving.volcano.sh", "v1alpha1", "modelservings")


def modelserving(gang: Gang) -> dict[str, Any]:
    """`gang` as a one-ServingGroup ModelServing: a role per role name, its replicas, entry + workers."""
    roles: dict[str, list[int]] = {}
    requests: dict[str, Resources] = {}
    for rr in gang.role_replicas:
        roles.setdefault(rr.role, []).append(len(rr.pods))
        requests[rr.role] = rr.pods[0].requests
        if any(p.requests != rr.pods[0].requests for p in rr.pods) or len(set(roles[rr.role])) != 1:
            raise ValueError(f"gang {gang.name}: role {rr.role!r} needs one pod shape and size per replica")
    network: dict[str, Any] = {}
    if gang.group_policy is not None:
        network["groupPolicy"] = {"mode": gang.group_policy.mode,
                                  "highestTierAllowed": gang.group_policy.highest_tier_allowed}
    if gang.role_policy is not None:
        network["rolePolicy"] = {"mode": gang.role_policy.mode,
                                 "highestTierAllowed": gang.role_policy.highest_tier_allowed}
    template = {"networkTopology": network, "roles": [
        {"name": role, "replicas": len(sizes), "workerReplicas": sizes[0] - 1,
         "entryTemplate": {"spec": {"containers": [container(requests[role])]}},
         "workerTemplate": {"spec": {"containers": [container(requests[role])]}}}
        for role, sizes in roles.items()]}
    return {"apiVersion": "/".join(MODELSERVING_API[:2]), "kind": "ModelServing", "metadata": {"name": gang.name},
            "spec": {"schedulerName": "volcano", "replicas": 1, "template": template}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_controller(cluster: LocalCluster, namespace: str, log_path: Path, time_limit: float
                     ) -> subprocess.Popen[bytes]:
    """`caldera controller --placement=caldera` for one namespace, ready to serve."""
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "CALDERA_PLACEMENT_WINDOW_SECONDS": "2",
           "CALDERA_PLACEMENT_TIME_LIMIT_SECONDS": str(time_limit),
           # No re-planning during the measurement: a gang Volcano does not bind counts as not placed.
           "CALDERA_PLACEMENT_DEADLINE_SECONDS": "3600"}
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "caldera.cli", "--log-format", "json", "controller", "--placement=caldera",
         "--peering", "", "--no-webhooks", "--namespace", namespace, "--metrics-port", str(port),
         "--health-port", "0"], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"controller exited with {proc.returncode}; see {log_path}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait.until(ready, 120, "placement controller ready", 0.5)
    return proc


def run_gate_path(kube: Kube, cluster: LocalCluster, namespace: str, fillers: Sequence[dict[str, Any]],
                  gangs: Sequence[Gang], args: argparse.Namespace) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Submit every gang as a ModelServing behind Caldera's gate, in order, and wait until each gang is
    bound or left gated as unplaceable. Returns gang -> pod -> node for the bound gangs."""
    kube.create_namespace(namespace)
    proc = start_controller(cluster, namespace, args.dir / "logs" / f"controller-{namespace}.log", args.time_limit)
    # Fillers only after the controller has taken in the nodes (a margin: it exposes no count of
    # known nodes). `Topology` now holds a pod listed before its node, so this is a precaution.
    listed = time.monotonic() + args.controller_margin
    wait.until(lambda: time.monotonic() >= listed, args.controller_margin + 5, "controller taking in nodes", 0.5)
    fill(kube, namespace, fillers)
    t0 = time.perf_counter()
    try:
        for gang in gangs:
            body: Any = modelserving(gang)
            kube.custom.create_namespaced_custom_object(*MODELSERVING_API[:2], namespace, MODELSERVING_API[2], body)
        expected = {g.name: len(g.pods) for g in gangs}

        def state() -> tuple[bool, dict[str, dict[str, str]]]:
            """(settled, bound gangs): every pod exists and is bound or gated as unplaceable."""
            by_gang: dict[str, list[dict[str, Any]]] = {}
            for pod in kube.pods(namespace, L.NAME_LABEL):
                by_gang.setdefault(pod["metadata"]["labels"][L.NAME_LABEL], []).append(pod)
            settled = True
            bound: dict[str, dict[str, str]] = {}
            for name, count in expected.items():
                pods = by_gang.get(name, [])
                nodes = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in pods}
                if len(pods) == count and all(nodes.values()):
                    bound[name] = nodes
                elif len(pods) < count or not all(is_gated(p) and any(
                        c.get("type") == CONDITION_TYPE for c in (p.get("status") or {}).get("conditions") or [])
                        for p in pods if not p["spec"].get("nodeName")):
                    settled = False
            return settled, bound

        last: list[Any] = [None, time.monotonic()]

        def stable() -> tuple[dict[str, dict[str, str]]] | None:
            settled, bound = state()
            key = (settled, tuple(sorted(bound)))
            if key != last[0]:
                last[0], last[1] = key, time.monotonic()
            # Settled and unchanged for a few scheduling cycles.
            return (bound,) if settled and time.monotonic() - last[1] >= 5 else None

        try:
            found = wait.until(stable, args.gate_timeout, "gate path settled", 1.0)[0]
            timed_out = False
        except TimeoutError:
            found = state()[1]
            timed_out = True
    finally:
        processes.terminate(proc)
    elapsed = time.perf_counter() - t0
    # ModelServing pods have their own names: map them onto the gang's pods by role replica.
    by_name = {g.name: g for g in gangs}
    assignments: dict[str, dict[str, str]] = {}
    pods = {p["metadata"]["name"]: p for p in kube.pods(namespace, L.NAME_LABEL)}
    for name, nodes in found.items():
        placed: dict[str, str] = {}
        for rr in by_name[name].role_replicas:
            mine = sorted(n for n in nodes if pods[n]["metadata"]["labels"].get(L.ROLE_ID_LABEL) == rr.name
                          and pods[n]["metadata"]["labels"].get(L.ROLE_LABEL) == rr.role)
            placed.update({p.name: nodes[n] for p, n in zip(rr.pods, mine, strict=True)})
        assignments[name] = placed
    # The controller is gone: drop its finalizers, or the namespace would stay Terminating.
    servings: Any = kube.custom.list_namespaced_custom_object(*MODELSERVING_API[:2], namespace, MODELSERVING_API[2])
    for ms in servings["items"]:
        kube.custom.patch_namespaced_custom_object(*MODELSERVING_API[:2], namespace, MODELSERVING_API[2],
                                                   ms["metadata"]["name"], {"metadata": {"finalizers": None}})
    kube.custom.delete_collection_namespaced_custom_object(*MODELSERVING_API[:2], namespace, MODELSERVING_API[2])
    kube.clear_namespace(namespace)
    return assignments, {"seconds": round(elapsed, 1), "timedOut": timed_out}


# ---------------------------------------------------------------------------------- scenario
def scenario(kube: Kube, bench: ModuleType, pattern: str, fraction: float, args: argparse.Namespace
             ) -> dict[str, Any]:
    key = f"{pattern}{int(fraction * 100)}pct"
    namespace = f"bench-{key}-{uuid.uuid4().hex[:4]}"
    # The same seeds and generators as benchmarks/placement.py's scenario (a).
    rng = random.Random(int(fraction * 100) + 7)
    # Every column plans on snapshots: read them only once the cluster's nodes have settled.
    wait_nodes_settled(kube)
    base = kube.snapshot()
    snap = bench.occupy(base, fraction, rng, pattern)
    free = sum(f.get(GPU, 0) for f in snap.free.values())
    gangs: list[Gang] = bench.stream(rng, free)
    kube.create_namespace(namespace)
    t0 = time.perf_counter()
    fillers = occupancy_pods(snap, bench.pod_requests)
    fill(kube, namespace, fillers)
    seen = kube.snapshot(namespace)
    seen_free = sum(f.get(GPU, 0) for f in seen.free.values())
    if seen_free != free:
        raise RuntimeError(f"{key}: the cluster shows {seen_free} free GPUs after filling, expected {free}")
    row: dict[str, Any] = {"freeGpus": free, "streamGangs": len(gangs), "fillerPods": len(fillers),
                           "fillSeconds": round(time.perf_counter() - t0, 1)}
    config = VolcanoConfig.local_cluster()
    t0 = time.perf_counter()
    try:
        outcomes = run_real(kube, namespace, gangs, args.pending_seconds, args.stop_after, args.max_gangs, config)
    finally:
        elapsed = time.perf_counter() - t0
        kube.clear_namespace(namespace)
    submitted = gangs[:len(outcomes)]
    row["submittedGangs"] = len(submitted)
    row["submittedGpus"] = sum(g.gpus for g in submitted)
    real = {o.name: o.assignments for o in outcomes if o.bound}
    row["realVolcano"] = {**bench.metrics(snap, submitted, real), "seconds": round(elapsed, 1),
                          "partiallyBoundThenDeleted": sum(1 for o in outcomes if not o.bound and o.assignments),
                          "meanSecondsToBind": round(sum(o.seconds for o in outcomes if o.bound)
                                                     / max(1, len(real)), 2)}
    t0 = time.perf_counter()
    reimpl = volcano_allocate(snap, submitted, config)
    row["reimplementation"] = {**bench.metrics(snap, submitted, reimpl), "seconds": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    windowed, plans = bench.caldera_stream(snap, submitted, 16, SolveOptions(time_limit_s=args.time_limit))
    row["calderaWindow16"] = {**bench.metrics(snap, submitted, windowed), "seconds": round(time.perf_counter() - t0, 2),
                              "solves": len(plans), "statuses": sorted({p.status for p in plans})}
    t0 = time.perf_counter()
    batch = solve(snap, submitted, SolveOptions(time_limit_s=args.batch_time_limit))
    one = {g: r.assignments for g, r in batch.results.items() if r.placed}
    row["calderaOneBatch"] = {**bench.metrics(snap, submitted, one), "seconds": round(time.perf_counter() - t0, 2),
                              "status": batch.status}
    if args.gate_path:
        gate, info = run_gate_path(kube, args.local, f"gate-{key}-{uuid.uuid4().hex[:4]}", fillers, submitted, args)
        row["calderaGatePath"] = {**bench.metrics(snap, submitted, gate), **info}
    t0 = time.perf_counter()
    row["upperBound"] = {**relaxation_bound(snap, submitted, time_limit_s=args.batch_time_limit),
                         "seconds": round(time.perf_counter() - t0, 2)}
    row["fidelity"] = fidelity(submitted, outcomes)
    real_gpus = max(1, row["realVolcano"]["gpus"])
    row["summary"] = {k: {"gangsMinusRealVolcano": row[k]["gangs"] - row["realVolcano"]["gangs"],
                          "gpuGainOverRealVolcanoPct": round(100 * (row[k]["gpus"] - real_gpus) / real_gpus, 2)}
                      for k in ("reimplementation", "calderaWindow16", "calderaOneBatch", "calderaGatePath")
                      if k in row}
    print(json.dumps({key: row}), file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="cluster directory (its own cluster)")
    parser.add_argument("--topology", default="rack-256")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    parser.add_argument("--scenarios", default=",".join(f"{p}{int(f * 100)}" for p, f in SCENARIOS),
                        help="comma-separated <pattern><percent>, pattern chunks or nodes")
    parser.add_argument("--pending-seconds", type=float, default=6.0,
                        help="how long an unbound gang may stay Pending before it counts as not placed")
    parser.add_argument("--stop-after", type=int, default=8, help="stop a stream after this many unbound gangs in a row")
    parser.add_argument("--max-gangs", type=int, default=150, help="submit at most this many gangs per scenario")
    parser.add_argument("--time-limit", type=float, default=5.0, help="CP-SAT time limit per window")
    parser.add_argument("--batch-time-limit", type=float, default=20.0, help="CP-SAT time limit, one batch and bound")
    parser.add_argument("--gate-path", action="store_true",
                        help="also submit the stream as ModelServings through `caldera controller --placement=caldera`")
    parser.add_argument("--gate-timeout", type=float, default=300.0, help="seconds for the gate path to settle")
    parser.add_argument("--controller-margin", type=float, default=30.0,
                        help="seconds between the controller's readiness and the fillers (see run_gate_path)")
    args = parser.parse_args()
    cases = []
    for item in args.scenarios.split(","):
        pattern = item.rstrip("0123456789")
        if pattern not in ("chunks", "nodes") or not item[len(pattern):]:
            parser.error(f"--scenarios: {item!r} is not <chunks|nodes><percent>")
        cases.append((pattern, int(item[len(pattern):]) / 100))
    bench = load_pure_benchmark()

    def progress(message: str) -> None:
        print(f"[cluster] {message}", file=sys.stderr, flush=True)

    cluster = Cluster(args.dir)
    t0 = time.perf_counter()
    cluster.up(args.topology, progress)
    local = LocalCluster(dir=cluster.dir, kubeconfig=cluster.kubeconfig, prometheus_url=cluster.prometheus_url,
                         server=cluster.server, topology=args.topology, cluster=cluster, started=True)
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "topology": args.topology,
                              "clusterUpSeconds": round(time.perf_counter() - t0, 1),
                              "settings": {"pendingSeconds": args.pending_seconds, "stopAfter": args.stop_after,
                                           "maxGangs": args.max_gangs, "timeLimit": args.time_limit,
                                           "batchTimeLimit": args.batch_time_limit, "gatePath": args.gate_path}}
    args.local = local
    kube = Kube(local)
    try:
        for pattern, fraction in cases:
            result[f"{pattern}{int(fraction * 100)}pct"] = scenario(kube, bench, pattern, fraction, args)
    finally:
        kube.close()
        if not args.keep:
            cluster.down(progress)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
