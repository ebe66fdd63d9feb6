"""Resuming work after Ray restarts an actor.

Ray re-runs only `__init__` when it restarts an actor (after a crash or a lost node); the calls its
first life received, such as "open the sockets" or "start polling", are not replayed. An actor whose
work starts with such a call queues it on itself when it finds it was restarted.
"""

from __future__ import annotations

import warnings

import ray


def resume_if_restarted(method: str) -> bool:
    """From an actor's `__init__`: if this is a restart, call `method` on ourselves once ready."""
    context = ray.get_runtime_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own property uses its old API
        restarted = bool(context.was_current_actor_reconstructed)
    if restarted:
        getattr(context.current_actor, method).remote()
    return restarted
