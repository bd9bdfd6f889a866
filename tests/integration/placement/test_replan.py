"""Re-planning on the local cluster: a planned gang that Volcano leaves Pending past the deadline
is sent back (its pods recreated behind the gate by the ModelServing controller) and planned again."""

from typing import Any

import pytest

PLANNED = "caldera.dev/planned-node"


@pytest.fixture
def deadline_seconds() -> str:
    return "3"


@pytest.mark.cluster
def test_a_planned_gang_volcano_leaves_pending_is_recreated_and_planned_again(placement_env: Any) -> None:
    env = placement_env
    manifest = env.modelserving("stuck", [("decode", 1, 0, 1)])
    # A queue that does not exist: Volcano never binds the gang, so the plan goes stale.
    manifest["metadata"]["annotations"] = {"scheduling.volcano.sh/queue-name": "no-such-queue"}
    env.apply(manifest)

    def planned_uid() -> str | None:
        pods = [p for p in env.pods("stuck").values() if not p["metadata"].get("deletionTimestamp")]
        if len(pods) == 1 and PLANNED in (pods[0]["metadata"].get("annotations") or {}):
            return str(pods[0]["metadata"]["uid"])
        return None

    first = env.wait_until("the gang planned", planned_uid)
    again = env.wait_until("a recreated pod planned again", lambda: (uid := planned_uid()) and uid != first and uid)
    assert again != first
    assert not env.pods("stuck")["stuck-0-decode-0-0"]["spec"].get("nodeName")
