"""An actor that starts its own work resumes it when Ray restarts the actor."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import ray

from actors.restart import start_on_self

pytestmark = pytest.mark.usefixtures("ray_session")


class Poller:
    """Like the feed, the simulator and the supervisor: its work begins with `start`."""

    def __init__(self) -> None:
        self.started = 0
        start_on_self("start")

    async def start(self) -> None:
        self.started += 1

    async def state(self) -> tuple[int, int]:
        return self.started, os.getpid()


def test_an_actor_starts_itself_and_again_after_a_restart(wait_until: Callable[..., Any]) -> None:
    actor = ray.remote(Poller).options(max_restarts=1).remote()

    def started() -> tuple[int, int] | None:
        try:
            state = ray.get(actor.state.remote(), timeout=10)
        except ray.exceptions.RayActorError:  # restarting
            return None
        return state if state[0] else None

    (count, pid) = wait_until(started, 60, "the actor to start itself")
    assert count == 1

    ray.kill(actor, no_restart=False)
    (count, new_pid) = wait_until(
        lambda: (state := started()) is not None and state[1] != pid and state,
        60,
        "the restarted actor to start itself",
    )
    assert count == 1 and new_pid != pid
    ray.kill(actor, no_restart=True)
