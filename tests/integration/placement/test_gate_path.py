"""The gate path on the local cluster: Caldera plans gated ServingGroups, Volcano binds them as planned."""

from typing import Any

import pytest

PLANNED = "caldera.dev/planned-node"
GATE = "caldera.dev/placement"


def allowed_hostnames(pod: dict[str, Any]) -> set[str]:
    terms = ((((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    return {v for t in terms for e in t.get("matchExpressions") or [] if e["key"] == "kubernetes.io/hostname"
            for v in e["values"]}


def bound_as_planned(pods: dict[str, dict[str, Any]], count: int) -> bool:
    """Every pod planned and bound to a node of its role replica's planned set: the pods of one
    task-spec share one hostname set, so Volcano may bind them to any of those nodes."""
    return len(pods) == count and all(
        PLANNED in (p["metadata"].get("annotations") or {}) and p["spec"].get("nodeName")
        and p["spec"]["nodeName"] in allowed_hostnames(p) for p in pods.values())


@pytest.mark.cluster
def test_the_seed_model_serving_is_bound_by_volcano_where_caldera_planned_it(placement_env: Any) -> None:
    env = placement_env
    env.apply(env.modelserving("sample", [("prefill", 2, 1, 1), ("decode", 1, 1, 1)]))
    pods = env.wait_until("pods bound on their planned nodes", lambda: (
        (p := env.pods("sample")) and bound_as_planned(p, 6) and p))
    for role_id in ("prefill-0", "prefill-1", "decode-0"):
        leaves = {env.hypernode_of(p["spec"]["nodeName"]) for n, p in pods.items() if f"-{role_id}-" in n}
        assert len(leaves) == 1, f"{role_id} spans {leaves}"
    assert all(not any(g["name"] == GATE for g in p["spec"].get("schedulingGates") or []) for p in pods.values())


@pytest.mark.cluster
def test_a_gang_that_cannot_fit_in_its_tier_stays_gated_with_the_reason(placement_env: Any) -> None:
    env = placement_env
    # 5 pods x 8 GPUs in one role replica: more than a tier-1 HyperNode (4 nodes x 8 GPUs) holds.
    env.apply(env.modelserving("huge", [("prefill", 1, 4, 8)]))

    def marked() -> dict[str, dict[str, Any]] | None:
        pods = env.pods("huge")
        conditions = [c for p in pods.values() for c in p["status"].get("conditions") or []
                      if c["type"] == "caldera.dev/Placement"]
        return pods if len(pods) == 5 and len(conditions) == 5 else None

    pods = env.wait_until("unplaceable condition on every pod", marked)
    for pod in pods.values():
        assert any(g["name"] == GATE for g in pod["spec"].get("schedulingGates") or [])
        condition = next(c for c in pod["status"]["conditions"] if c["type"] == "caldera.dev/Placement")
        assert condition["status"] == "False"
        assert "rolePolicy" in condition["message"] and "tier 1" in condition["message"]
    events = env.wait_until("Unplaceable event", lambda: env.events("Unplaceable"))
    assert "rolePolicy" in events[0]["message"]
