"""The Ray shell around `StrategyShard`: named `shard-<deployment>-<k>` in the `shardline` namespace.

`on_ticks` hands a batch to the node's thread and returns at once; only when more than
`max_pending_batches` batches are still being worked through does it wait (without blocking the
actor's loop) for the oldest one — back-pressure the router feels as a slower `on_ticks`.

On start and on every restart (Ray runs `__init__` again) the shard registers its book with the
execution actor and itself with the router, so both reach the new incarnation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections import deque
from typing import Any

import numpy as np
import ray

from actors.orders import Fill, OrderRequest, OrderUpdate
from actors.shard.instant_fills import InstantFillGateway
from actors.shard.shard import ShardSpec, StrategyShard

log = logging.getLogger(__name__)

NAMESPACE = "shardline"
EXECUTION = "execution"
ROUTER = "router"


class ExecutionActorGateway:
    """Sends a shard's orders to the named execution actor, awaiting its answers on any loop.

    Parameters
    ----------
    name : str, default "execution"
        The execution actor's name in the `shardline` namespace.
    """

    def __init__(self, name: str = EXECUTION) -> None:
        self._name = name
        self._handle: Any = None

    def _actor(self) -> Any:
        if self._handle is None:
            self._handle = ray.get_actor(self._name, namespace=NAMESPACE)
        return self._handle

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            ref = getattr(self._actor(), method).remote(*args, **kwargs)
            # `future()` is a concurrent future: awaitable from the node's loop on its own thread.
            return await asyncio.wrap_future(ref.future())
        except ray.exceptions.RayActorError:
            self._handle = None  # look the actor up again next time (it may have restarted)
            raise

    async def submit(self, order: OrderRequest) -> OrderUpdate:
        result: OrderUpdate = await self._call("submit", order)
        return result

    async def cancel(self, client_order_id: str) -> OrderUpdate | None:
        result = await self._call("cancel", client_order_id)
        return result if isinstance(result, OrderUpdate) else None

    async def modify(
        self,
        client_order_id: str,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
    ) -> OrderUpdate | None:
        result = await self._call(
            "modify", client_order_id, quantity=quantity, price=price, trigger_price=trigger_price
        )
        return result if isinstance(result, OrderUpdate) else None


class StrategyShardActor:
    """Ray actor: one strategy shard (one Nautilus TradingNode in this worker process).

    Parameters
    ----------
    spec : ShardSpec
        What the shard runs.
    execution : str, default "execution"
        The execution actor's name.
    router : str or None, default "router"
        The router's name, to register with; ``None`` skips registration.
    max_pending_batches : int, default 4
        Batches handed over but not yet handled before `on_ticks` starts waiting.
    instant_fills : bool, default False
        Fill every order at once in-process at the last traded price instead of sending it to
        the execution actor: the bare-node comparison of `shardline bench`, never trading.
    """

    def __init__(
        self,
        spec: ShardSpec,
        execution: str = EXECUTION,
        router: str | None = ROUTER,
        max_pending_batches: int = 4,
        instant_fills: bool = False,
    ) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self._spec = spec
        self._instant: InstantFillGateway | None = InstantFillGateway() if instant_fills else None
        gateway = self._instant or ExecutionActorGateway(execution)
        self._shard = StrategyShard(spec, gateway)
        self._keys_by_iid = self._shard.keys_by_iid
        self._pending: deque[concurrent.futures.Future[int]] = deque()
        self._max_pending = max(1, max_pending_batches)
        self._handover: asyncio.Lock | None = None
        self._announce(None if instant_fills else execution, router)

    def _announce(self, execution: str | None, router: str | None) -> None:
        # A registration that fails is logged, not raised: the shard still runs, and the router
        # and execution actor learn of it on their own restart or its next one.
        context = ray.get_runtime_context()
        actor_name = context.get_actor_name() or self._spec.name
        if execution is not None:
            try:
                handle = ray.get_actor(execution, namespace=NAMESPACE)
                ray.get(handle.register_book.remote(self._spec.deployment, actor_name), timeout=30)
            except ValueError:
                log.warning(
                    "%s: no %r actor; order updates arrive only as submit answers", actor_name, execution
                )
            except Exception as err:
                log.error("%s: registering book with %r failed: %s", actor_name, execution, err)
        if router is not None:
            try:
                handle = ray.get_actor(router, namespace=NAMESPACE)
                me = context.current_actor
                ray.get(handle.register_shard.remote(self._spec.deployment, self._spec.index, me), timeout=30)
            except ValueError:
                log.warning("%s: no %r actor to register with", actor_name, router)
            except Exception as err:
                log.error("%s: registering with %r failed: %s", actor_name, router, err)

    async def ready(self) -> str:
        return self._shard.state

    async def on_ticks(self, ticks: np.ndarray) -> int:
        """Hand a tick batch over; returns the rows handed over (0 when the shard is not running)."""
        if self._handover is None:
            self._handover = asyncio.Lock()
        async with self._handover:  # FIFO: batches reach the node in the order they arrived
            while self._pending and self._pending[0].done():
                self._pending.popleft()
            while len(self._pending) >= self._max_pending:
                await asyncio.wrap_future(self._pending.popleft())
            if self._instant is not None:
                self._instant.mark_batch(self._keys_by_iid, ticks)
            future = self._shard.submit_ticks(ticks)
            if future.done():
                return future.result()  # refused: the shard is not running
            self._pending.append(future)
            return len(ticks)

    async def drain(self) -> int:
        """Wait until every handed-over batch is handled; returns how many were waited for."""
        waited = 0
        while self._pending:
            await asyncio.wrap_future(self._pending.popleft())
            waited += 1
        return waited

    async def on_order_update(self, update: OrderUpdate) -> bool:
        return await asyncio.wrap_future(self._shard.on_order_update(update))

    async def on_order_updates(self, updates: list[OrderUpdate]) -> int:
        """The execution actor's updates, in order; how many were this shard's orders."""
        return await asyncio.wrap_future(self._shard.on_order_updates(updates))

    async def on_venue_fills(self, fills: list[Fill]) -> int:
        """Fills of orders the venue placed on this shard's book itself (square-offs, GTT and
        bracket legs); how many were on this shard's instruments and new."""
        return await asyncio.wrap_future(self._shard.on_venue_fills(fills))

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await asyncio.wrap_future(self._shard.stats_future())
        # The supervisor tells restarts by a new pid, and shows where each shard runs.
        stats["pid"] = os.getpid()
        stats["node"] = ray.get_runtime_context().get_node_id()[:12]
        return stats

    async def save_state(self) -> dict[str, bytes]:
        return await asyncio.wrap_future(self._shard.save_state_future())

    async def load_state(self, state: dict[str, bytes]) -> None:
        await asyncio.wrap_future(self._shard.load_state_future(state))

    async def shutdown(self) -> None:
        """Stop the node (strategy `on_stop` runs); the caller then kills the actor."""
        await asyncio.to_thread(self._shard.stop)


def shard_actor_options(spec: ShardSpec, **overrides: Any) -> dict[str, Any]:
    """Ray options of a shard actor; the caller adds `lifetime="detached"` where it wants that.

    Ray restarts a dead shard forever, but does not retry its tasks: a batch re-sent after a
    crash could reach the strategy twice, and the router counts a failed batch instead.
    """
    options: dict[str, Any] = {
        "name": spec.name,
        "namespace": NAMESPACE,
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": 64,
    }
    options.update(overrides)
    return options


def start_shard_actor(
    spec: ShardSpec,
    execution: str = EXECUTION,
    router: str | None = ROUTER,
    max_pending_batches: int = 4,
    instant_fills: bool = False,
    **options: Any,
) -> Any:
    """Create the named shard actor for `spec`; `options` override `shard_actor_options`."""
    return (
        ray.remote(StrategyShardActor)
        .options(**shard_actor_options(spec, **options))
        .remote(
            spec,
            execution=execution,
            router=router,
            max_pending_batches=max_pending_batches,
            instant_fills=instant_fills,
        )
    )
