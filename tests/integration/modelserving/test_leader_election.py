"""Two controller replicas elect a leader with kopf peering; the standby takes over when it dies."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.cluster


def test_only_the_leader_writes_and_the_standby_takes_over(pair_env: Any, controller_pair: Any,
                                                           seed: dict[str, Any]) -> None:
    leader, standby, _ = controller_pair
    pair_env.apply(seed)
    pair_env.wait_until("Available", pair_env.available, timeout=120)
    assert leader.metric("caldera_modelserving_writes_total") > 0
    assert standby.metric("caldera_modelserving_writes_total") == 0
    leader.kill()
    pair_env.scale(2)
    pair_env.wait_until("the standby scaled to 2", pair_env.available, timeout=120)
    assert standby.metric("caldera_modelserving_writes_total") > 0
