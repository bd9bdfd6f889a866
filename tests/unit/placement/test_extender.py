"""The Volcano extender over real HTTP, with payloads shaped like Volcano's TaskInfo/NodeInfo/JobInfo."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from placement.extender import ExtenderCore, make_app
from topology.graph import HyperNodeSpec, MemberSelector

GPU = "nvidia.com/gpu"
NODES = [f"node-{i}" for i in range(4)]
HYPERNODES = [
    HyperNodeSpec("leaf-0", 1, (MemberSelector("Node", exact="node-0"), MemberSelector("Node", exact="node-1"))),
    HyperNodeSpec("leaf-1", 1, (MemberSelector("Node", exact="node-2"), MemberSelector("Node", exact="node-3"))),
    HyperNodeSpec("spine-0", 2, (MemberSelector("HyperNode", exact="leaf-0"), MemberSelector("HyperNode", exact="leaf-1"))),
]


def resource(cpu_milli: float, mem: float, gpus: float) -> dict[str, Any]:
    return {"MilliCPU": cpu_milli, "Memory": mem, "ScalarResources": {GPU: gpus * 1000}, "MaxTaskNum": 110}


def node_info(name: str, idle_gpus: int) -> dict[str, Any]:
    node = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": {"allocatable": {"cpu": "96", "memory": "1024Gi", GPU: "8"},
                                   "conditions": [{"type": "Ready", "status": "True"}]}}
    return {"Name": name, "Node": node, "State": {"Phase": "Ready", "Reason": ""},
            "Idle": resource(96000, 1024 * 2**30, idle_gpus), "Used": resource(0, 0, 8 - idle_gpus),
            "Allocatable": resource(96000, 1024 * 2**30, 8), "Capacity": resource(96000, 1024 * 2**30, 8),
            "Tasks": {}, "Others": None, "RevocableZone": ""}


def task(job: str, name: str, role_id: str, gpus: int) -> dict[str, Any]:
    pod = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                        "labels": {"modelserving.volcano.sh/name": "sample", "modelserving.volcano.sh/role-id": role_id,
                                   "modelserving.volcano.sh/role": role_id.rsplit("-", 1)[0]},
                        "annotations": {"scheduling.k8s.io/group-name": job, "volcano.sh/task-spec": role_id}},
           "spec": {"schedulerName": "volcano", "containers": [
               {"name": "engine", "resources": {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}}}]},
           "status": {"phase": "Pending"}}
    return {"UID": f"uid-{name}", "Job": f"default/{job}", "Name": name, "Namespace": "default", "TaskRole": role_id,
            "Resreq": resource(0, 0, gpus), "InitResreq": resource(0, 0, gpus), "Status": 1, "Priority": 0,
            "VolumeReady": False, "Preemptable": False, "BestEffort": False, "Pod": pod}


def job_info(name: str, roles: dict[str, int], pods_per_role: int, gpus: int, role_tier: int = 1) -> dict[str, Any]:
    tasks = {}
    for role_id, _ in roles.items():
        for k in range(pods_per_role):
            t = task(name, f"{name}-{role_id}-{k}", role_id, gpus)
            tasks[t["UID"]] = t
    policy = {"name": "engine", "labelSelector": {"matchLabels": {"modelserving.volcano.sh/name": "sample"}},
              "matchLabelKeys": ["modelserving.volcano.sh/role-id"], "subGroupSize": pods_per_role,
              "networkTopology": {"mode": "hard", "highestTierAllowed": role_tier}}
    podgroup = {"metadata": {"name": name, "namespace": "default"},
                "spec": {"minMember": len(tasks), "networkTopology": {"mode": "hard", "highestTierAllowed": 2},
                         "subGroupPolicy": [policy]},
                "status": {"phase": "Pending"}, "Version": "v1beta1"}
    return {"UID": f"default/{name}", "Name": name, "Namespace": "default", "Queue": "default", "Priority": 0,
            "MinAvailable": len(tasks), "Tasks": tasks, "PodGroup": podgroup, "TaskMinAvailable": {},
            "TaskStatusIndex": {}, "Allocated": resource(0, 0, 0), "TotalRequest": resource(0, 0, 0)}


def session(jobs: list[dict[str, Any]], idle: dict[str, int] | None = None) -> dict[str, Any]:
    idle = idle or {}
    return {"Jobs": {j["UID"]: j for j in jobs}, "Nodes": {n: node_info(n, idle.get(n, 8)) for n in NODES},
            "Queues": {"default": {"UID": "default", "Name": "default", "Weight": 1}}, "NamespaceInfo": {},
            "RevocableNodes": {}, "NodeList": NODES}


@pytest.fixture
async def http() -> AsyncIterator[TestClient[Any, Any]]:
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(ExtenderCore(hypernodes=lambda: HYPERNODES))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def post(http: TestClient[Any, Any], verb: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"/{verb}", json=body)
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


async def planned_node(http: TestClient[Any, Any], t: dict[str, Any]) -> str:
    scores = await post(http, "prioritize", {"task": t, "nodes": [node_info(n, 8) for n in NODES]})
    return max(scores["nodeScore"], key=scores["nodeScore"].get)


async def test_a_job_with_a_feasible_plan_is_enqueueable(http: TestClient[Any, Any]) -> None:
    job = job_info("sample-0", {"prefill-0": 1, "decode-0": 1}, 2, 4)
    await post(http, "onSessionOpen", session([job]))
    assert (await post(http, "jobEnqueueable", {"job": job}))["status"] == 1


async def test_a_job_whose_role_replica_exceeds_every_tier_1_domain_is_rejected(http: TestClient[Any, Any]) -> None:
    job = job_info("big-0", {"prefill-0": 1}, 3, 8)
    await post(http, "onSessionOpen", session([job]))
    assert (await post(http, "jobEnqueueable", {"job": job}))["status"] == -1


async def test_predicate_passes_a_task_only_on_its_planned_node(http: TestClient[Any, Any]) -> None:
    job = job_info("sample-0", {"prefill-0": 1}, 2, 8)
    await post(http, "onSessionOpen", session([job]))
    t = next(iter(job["Tasks"].values()))
    target = await planned_node(http, t)
    verdicts = {n: await post(http, "predicate", {"task": t, "node": node_info(n, 8)}) for n in NODES}
    assert verdicts[target] == {"status": "", "code": 0}
    assert all(v["code"] == 2 and v["status"] for n, v in verdicts.items() if n != target)


async def test_a_role_replica_is_planned_inside_one_tier_1_hypernode(http: TestClient[Any, Any]) -> None:
    job = job_info("sample-0", {"prefill-0": 1}, 2, 8)
    await post(http, "onSessionOpen", session([job], idle={"node-0": 0}))
    nodes = {await planned_node(http, t) for t in job["Tasks"].values()}
    assert nodes == {"node-2", "node-3"}


async def test_scalar_resources_are_read_as_milli_units(http: TestClient[Any, Any]) -> None:
    # node-0..2 have 4 idle GPUs (4000 milli); only node-3 can take an 8-GPU task.
    job = job_info("one-0", {"engine-0": 1}, 1, 8)
    await post(http, "onSessionOpen", session([job], idle={"node-0": 4, "node-1": 4, "node-2": 4}))
    assert await planned_node(http, next(iter(job["Tasks"].values()))) == "node-3"


async def test_tasks_of_unknown_jobs_are_never_blocked(http: TestClient[Any, Any]) -> None:
    await post(http, "onSessionOpen", session([]))
    stranger = task("other-0", "other-0-x-0", "x-0", 1)
    assert await post(http, "predicate", {"task": stranger, "node": node_info("node-1", 8)}) == {"status": "", "code": 0}


async def test_job_enqueueable_abstains_before_any_session(http: TestClient[Any, Any]) -> None:
    job = job_info("sample-0", {"prefill-0": 1}, 1, 1)
    assert (await post(http, "jobEnqueueable", {"job": job}))["status"] == 0


async def test_unknown_verbs_are_404(http: TestClient[Any, Any]) -> None:
    response = await http.post("/bind", json={})
    assert response.status == 404


async def test_session_close_and_acknowledging_verbs_answer_200(http: TestClient[Any, Any]) -> None:
    job = job_info("sample-0", {"prefill-0": 1}, 1, 1)
    t = next(iter(job["Tasks"].values()))
    assert await post(http, "jobReady", {"job": job}) == {"status": True}
    assert await post(http, "allocateFunc", {"task": t}) == {"errorMessage": ""}
    assert await post(http, "onSessionClose", {}) == {}
