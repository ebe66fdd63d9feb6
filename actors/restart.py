"""Actors that start their own work, so that a restart resumes it.

Ray re-runs only `__init__` when it restarts an actor (after a crash or a lost node); the calls its
first life received, such as "open the sockets" or "start polling", are not replayed. An actor whose
work begins with such a call queues it on itself from `__init__`: its first life and every restart
then start the same way, whoever else also asks (the method must be idempotent).
"""

from __future__ import annotations

import ray


def start_on_self(method: str) -> None:
    """From an actor's `__init__`: call `method` on this actor once it is ready for calls."""
    getattr(ray.get_runtime_context().current_actor, method).remote()
