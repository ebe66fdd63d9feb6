"""What a restarted deployments manager does with a swap or rescale its predecessor left half done."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.deployments import DeploymentRecord, recovery_action

SPEC = {"name": "d", "strategy": "a:B", "universe": {"query": "NSE equities"}, "shards": 2}


def record(**changes: Any) -> DeploymentRecord:
    fields: dict[str, Any] = {
        "name": "d",
        "spec": SPEC,
        "instruments": ["NSE:1"],
        "shards": 2,
        "state": "running",
    }
    fields.update(changes)
    return DeploymentRecord(**fields)


SWAPPING = {"operation": "swapping to generation 1", "pending_spec": {**SPEC, "strategy": "a:C"}}
SCALING_UP = {"operation": "scaling 2 -> 3 shards", "pending_shards": 3}
SCALING_DOWN = {"operation": "scaling 2 -> 1 shards", "pending_shards": 1}


@pytest.mark.parametrize(
    ("changes", "routed", "current_ok", "routed_ok", "following_ok", "action"),
    [
        # a swap cut short before the old version stopped: it takes the held ticks back
        (SWAPPING, 2, True, True, False, "undo"),
        (SWAPPING, 2, True, True, True, "undo"),
        # ... after the old version stopped: the new one, attached already, carries on
        (SWAPPING, 2, False, False, True, "finish-swap"),
        (SWAPPING, 2, False, False, False, "fail"),
        (SWAPPING, 0, True, True, True, "fail"),  # the route is gone (the router restarted)
        # a rescale cut short before the ring changed: as it was
        (SCALING_UP, 2, True, True, False, "undo"),
        (SCALING_DOWN, 2, True, True, False, "undo"),
        # ... after: the ring's shards, if they all run
        (SCALING_UP, 3, True, True, False, "finish-rescale"),
        (SCALING_DOWN, 1, False, True, False, "finish-rescale"),
        (SCALING_UP, 3, True, False, False, "fail"),
        ({"operation": "scaling 2 -> 3 shards"}, 3, True, True, False, "fail"),  # target unknown
    ],
)
def test_an_interrupted_operation_is_undone_finished_or_failed(
    changes: dict[str, Any], routed: int, current_ok: bool, routed_ok: bool, following_ok: bool, action: str
) -> None:
    assert recovery_action(record(**changes), routed, current_ok, routed_ok, following_ok) == action
