"""Re-planning when a node disappears: pods planned on it but not yet bound are sent back and planned again."""

import uuid
from typing import Any

import pytest
from kubernetes import client

PLANNED = "caldera.dev/planned-node"


@pytest.mark.cluster
def test_pods_planned_on_a_node_that_disappears_are_recreated_and_planned_again(placement_env: Any) -> None:
    env = placement_env
    node_name = f"gone-{uuid.uuid4().hex[:6]}"
    # A tainted KWOK node only this test's pod tolerates, outside every HyperNode.
    node: Any = {"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": node_name, "labels": {"kubernetes.io/hostname": node_name, "test": node_name},
                              "annotations": {"kwok.x-k8s.io/node": "fake"}},
                 "spec": {"taints": [{"key": "test", "value": node_name, "effect": "NoSchedule"}]},
                 "status": {"capacity": {"cpu": "8", "memory": "16Gi", "pods": "10", "nvidia.com/gpu": "8"},
                            "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "10", "nvidia.com/gpu": "8"}}}
    env.core.create_node(node)
    try:
        manifest = env.modelserving("lonely", [("decode", 1, 0, 1)])
        template = manifest["spec"]["template"]
        del template["networkTopology"]  # the node is in no HyperNode
        spec = template["roles"][0]["entryTemplate"]["spec"]
        spec["nodeSelector"] = {"test": node_name}
        spec["tolerations"] = [{"key": "test", "operator": "Equal", "value": node_name, "effect": "NoSchedule"}]
        # A queue that does not exist keeps Volcano from binding, so the pod stays planned-but-unbound.
        manifest["metadata"]["annotations"] = {"scheduling.volcano.sh/queue-name": "no-such-queue"}
        env.apply(manifest)

        def planned() -> dict[str, Any] | None:
            pods = [p for p in env.pods("lonely").values() if not p["metadata"].get("deletionTimestamp")]
            ok = len(pods) == 1 and (pods[0]["metadata"].get("annotations") or {}).get(PLANNED) == node_name
            return pods[0] if ok else None

        first = env.wait_until("the pod planned on the test node", planned)
        assert not first["spec"].get("nodeName")  # planned, not bound: only the planner can send it back
    finally:
        try:
            env.core.delete_node(node_name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    def replanned() -> dict[str, Any] | None:
        pods = [p for p in env.pods("lonely").values() if not p["metadata"].get("deletionTimestamp")]
        if len(pods) != 1 or pods[0]["metadata"]["uid"] == first["metadata"]["uid"]:
            return None
        conditions = [c for c in pods[0]["status"].get("conditions") or [] if c["type"] == "caldera.dev/Placement"]
        return pods[0] if conditions else None

    pod = env.wait_until("a recreated pod, unplaceable now that its only node is gone", replanned)
    condition = next(c for c in pod["status"]["conditions"] if c["type"] == "caldera.dev/Placement")
    assert "nodeSelection" in condition["message"]
