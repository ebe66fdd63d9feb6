"""The router actor (named "router"): a thin async shell around `TickRouter`.

Feeds call `push(batch)`; it returns once the whole batch is buffered, so a `block` deployment
whose shard falls behind slows the feed down (back-pressure), while a `conflate` one never does.
One delivery loop per shard drains its buffer into the shard actor's `on_ticks(ticks) -> int`,
with at most `max_in_flight` calls outstanding (1 keeps per-instrument order: Ray does not order
calls to an async actor).

A shard that dies (`RayActorError`) loses the ticks it had in flight (counted as dropped at
failure); its share is held in its buffer until it is back: Ray restarted it and it answers
again, or it calls `register_shard` (every shard does from its `__init__`). If it stays away
longer than `failover_after_s`, its instruments (and their held ticks) move to the deployment's
other shards, and come back with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import ray
from ray.exceptions import RayActorError

from actors.router.router import Delivery, DeploymentStats, RouterError, TickRouter
from actors.ticks import batch_to_ticks
from cluster.config import FlowPolicy, RouterConfig, Secrets, ShardlineConfig
from cluster.topology import NAMESPACE, ROUTER

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0  # how long one "are you back?" call to a failed shard may take


@dataclass
class _ShardLink:
    handle: Any = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None
    sends: set[asyncio.Task[None]] = field(default_factory=set)
    errors: int = 0  # batches the shard raised on (its own code failed)


@dataclass
class _QuoteListener:
    handle: Any
    method: str
    busy: asyncio.Future[Any] | None = None
    skipped: int = 0


class RouterActor:
    """Ray actor body. Create it with `start_router`, or `ray.remote(RouterActor)` and options.

    Parameters
    ----------
    config
        The whole configuration or just its `router` section.
    max_in_flight
        `on_ticks` calls a shard may have outstanding.
    max_batch
        Most ticks in one `on_ticks` call.
    failover_after_s
        How long a dead shard's share is held before it moves to the other shards (None: hold
        until it returns).
    """

    def __init__(
        self,
        config: ShardlineConfig | RouterConfig,
        *,
        max_in_flight: int = 1,
        max_batch: int = 16_384,
        failover_after_s: float | None = 10.0,
        journal_stream: str | None = None,
    ) -> None:
        router_config = config.router if isinstance(config, ShardlineConfig) else config
        self._router = TickRouter(router_config, max_in_flight=max_in_flight, max_batch=max_batch)
        self._failover_after_s = failover_after_s
        self._links: dict[tuple[str, int], _ShardLink] = {}
        self._space = asyncio.Event()
        self._quote_listeners: dict[str, _QuoteListener] = {}
        self._publisher: asyncio.Task[None] | None = None
        self._waiting_pushes = 0
        self._failures = 0
        # The routing table (deployments, their shard actors, quote listeners) is journaled so a
        # restarted router rebuilds it; ticks it held when it died are lost and counted by feeds.
        self._journal: Any = None
        self._restore: RoutingTable | None = None
        if journal_stream is not None and isinstance(config, ShardlineConfig):
            from actors.journal.journal import open_journal

            self._journal = open_journal(journal_stream, config.data_path, Secrets().redis_url)
            table = RoutingTable.replay(entry.record for entry in self._journal.replay())
            self._restore = table if table.deployments or table.listeners else None
        log.info(
            "router: virtual_nodes=%d buffer_ticks=%d max_in_flight=%d failover_after_s=%s",
            router_config.virtual_nodes,
            router_config.buffer_ticks,
            max_in_flight,
            failover_after_s,
        )

    # -- feeds -------------------------------------------------------------------------------

    async def push(self, ticks: np.ndarray | pa.RecordBatch, timeout_s: float | None = None) -> int:
        """Buffer a tick batch; returns how many ticks were taken (all, unless `timeout_s` ran out)."""
        await self._restored()
        if isinstance(ticks, pa.RecordBatch):
            ticks = batch_to_ticks(ticks)
        total = len(ticks)
        done = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            result = self._router.push(ticks[done:] if done else ticks)
            done += result.accepted
            for key in result.touched:
                self._links[key].wake.set()
            if done >= total:
                return total
            # A block shard is full: wait until some delivery frees space, then push the rest.
            self._space.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return done
            self._waiting_pushes += 1
            try:
                await asyncio.wait_for(self._space.wait(), remaining)
            except TimeoutError:
                return done
            finally:
                self._waiting_pushes -= 1

    # -- deployments and shards --------------------------------------------------------------

    async def add_deployment(
        self,
        name: str,
        universe: Mapping[int, str],
        shards: int,
        policy: FlowPolicy | str = FlowPolicy.BLOCK,
        handles: Sequence[Any] | None = None,
        active: bool = True,
    ) -> DeploymentStats:
        """Route `universe` (iid -> "EXCH:token") over `shards` shards.

        Ticks are held for a shard until it registers (or its handle is given here).
        """
        if not isinstance(universe, Mapping):
            raise RouterError(
                f"deployment {name!r}: the universe must map each iid to its 'EXCH:token' key "
                "(the ring hashes the key, which stays the same across days)"
            )
        await self._restored()
        self._router.add_deployment(name, universe, shards, policy, active=active)
        self._record(
            op="add",
            name=name,
            universe=[[int(iid), key] for iid, key in universe.items()],
            shards=shards,
            policy=FlowPolicy(policy).value,
            active=active,
        )
        for index in range(shards):
            link = self._links[(name, index)] = _ShardLink()
            link.loop = asyncio.get_running_loop().create_task(self._deliver(name, index, link))
        for index, handle in enumerate(handles or ()):
            await self.register_shard(name, index, handle)
        return self._router.stats().deployments[name]

    async def remove_deployment(self, name: str) -> DeploymentStats:
        """Stop routing to `name`; returns its final counts (buffered ticks counted as dropped)."""
        await self._restored()
        final = self._router.remove_deployment(name)
        self._record(op="remove", name=name)
        for key in [k for k in self._links if k[0] == name]:
            link = self._links.pop(key)
            for task in (link.loop, link.watchdog, *link.sends):
                if task is not None:
                    task.cancel()
        self._space.set()
        return final

    async def register_shard(self, deployment: str, index: int, handle: Any) -> int:
        """A shard actor (re)started: deliver to it; returns its generation."""
        await self._restored()
        link = self._links.get((deployment, index))
        if link is None:
            raise RouterError(f"no deployment {deployment!r} with a shard {index} to register")
        generation = self._router.shard_up(deployment, index)
        link.handle = handle
        actor_name = _actor_name(handle)
        if actor_name:
            self._record(op="shard", name=deployment, index=index, actor=actor_name)
        self._wake_deployment(deployment)  # a restored ring may have moved ticks to any shard
        log.info("router: shard %d of %s registered (generation %d)", index, deployment, generation)
        return generation

    async def hold(self, name: str) -> DeploymentStats:
        """Stop delivering to `name`'s shards and return once none has a batch in flight.

        Ticks keep arriving and wait in the buffers (by the deployment's flow policy) until each
        shard is registered again (`register_shard`, with the same or a replacement actor): the
        batch boundary at which a hot swap or a rescale changes the shards.
        """
        for index in range(self._router.shard_count(name)):
            self._router.shard_down(name, index)
        sends = [
            task for (deployment, _), link in self._links.items() if deployment == name for task in link.sends
        ]
        if sends:
            await asyncio.gather(*sends, return_exceptions=True)
        return self._router.stats().deployments[name]

    async def resize_deployment(self, name: str, shards: int) -> DeploymentStats:
        """Grow or shrink `name` to `shards` shards (`hold` it first when shrinking).

        Ticks for new shards are held until they register; removed shards' buffered ticks move to
        the instruments' new owners.
        """
        await self._restored()
        before = self._router.shard_count(name)
        self._router.resize_deployment(name, shards)
        self._record(op="resize", name=name, shards=shards)
        for index in range(shards, before):
            link = self._links.pop((name, index))
            for task in (link.loop, link.watchdog, *link.sends):
                if task is not None:
                    task.cancel()
        for index in range(before, shards):
            link = self._links[(name, index)] = _ShardLink()
            link.loop = asyncio.get_running_loop().create_task(self._deliver(name, index, link))
        self._wake_deployment(name)
        return self._router.stats().deployments[name]

    async def set_active(self, name: str, active: bool) -> None:
        """Start or stop routing new batches to `name` (between two batches)."""
        await self._restored()
        self._router.set_active(name, active)
        self._record(op="active", name=name, active=active)

    async def swap(self, old: str, new: str) -> None:
        """Hot swap: from the next batch on, `new` gets what `old` got; `old` drains what it holds."""
        await self._restored()
        self._router.swap(old, new)
        self._record(op="active", name=old, active=False)
        self._record(op="active", name=new, active=True)

    # -- the terminal --------------------------------------------------------------------------

    async def latest_quotes(self, iids: Iterable[int] | None = None) -> np.ndarray:
        """Latest quote per instrument (`QUOTE_DTYPE`), for `iids` or every instrument seen."""
        return self._router.quotes.snapshot(iids)

    async def register_quote_listener(self, actor_name: str, method: str = "on_quotes") -> None:
        """Push changed quotes to `actor_name.method(quotes)` at most `ui_snapshot_hz` times a second.

        A listener still busy with the previous push is skipped (it gets the newer state next).
        """
        await self._restored()
        handle = ray.get_actor(actor_name, namespace=NAMESPACE)
        self._quote_listeners[actor_name] = _QuoteListener(handle, method)
        self._record(op="listener", name=actor_name, method=method)
        if self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_quotes())

    # -- health --------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        await self._restored()
        stats = self._router.stats()
        deployments = msgspec.to_builtins(stats.deployments)
        for name, deployment in deployments.items():
            for shard in deployment["shards"]:
                link = self._links.get((name, shard["index"]))
                shard["registered"] = link is not None and link.handle is not None
                shard["errors"] = link.errors if link else 0
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "ticks_in": stats.received,
            "ticks_out": sum(d.ticks_out for d in stats.deployments.values()),
            "unrouted": stats.unrouted,
            "rejected_iids": stats.rejected_iids,
            "waiting_pushes": self._waiting_pushes,
            "shard_failures": self._failures,
            "balanced": all(d.balanced for d in stats.deployments.values()),
            "deployments": deployments,
        }

    # -- internals -----------------------------------------------------------------------------

    async def _deliver(self, name: str, index: int, link: _ShardLink) -> None:
        while True:
            link.wake.clear()
            delivery = self._router.take(name, index) if link.handle is not None else None
            if delivery is None:
                await link.wake.wait()
                continue
            self._space.set()
            task = asyncio.get_running_loop().create_task(self._send(link, delivery))
            link.sends.add(task)
            task.add_done_callback(link.sends.discard)

    async def _send(self, link: _ShardLink, delivery: Delivery) -> None:
        try:
            await link.handle.on_ticks.remote(delivery.ticks)
        except RayActorError as err:
            if self._router.fail(delivery):
                self._failures += 1
                log.warning(
                    "router: shard %d of %s failed with %d ticks in flight; holding its share: %s",
                    delivery.shard,
                    delivery.deployment,
                    len(delivery.ticks),
                    str(err).splitlines()[0],
                )
                if link.watchdog is None or link.watchdog.done():
                    link.watchdog = asyncio.get_running_loop().create_task(
                        self._await_return(delivery.deployment, delivery.shard, link)
                    )
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the shard's own code raised on this batch: it got it, but failed
            link.errors += 1
            log.error(
                "router: shard %d of %s failed on a batch: %r", delivery.shard, delivery.deployment, err
            )
            self._router.complete(delivery)
        else:
            self._router.complete(delivery)
        finally:
            link.wake.set()

    async def _await_return(self, name: str, index: int, link: _ShardLink) -> None:
        """Until a failed shard is back (it answers again, or registers anew), keep asking; past
        `failover_after_s`, hand its instruments to the deployment's other shards meanwhile."""
        loop = asyncio.get_running_loop()
        give_up_at = None if self._failover_after_s is None else loop.time() + self._failover_after_s
        delay = 0.05
        while not self._router.is_up(name, index):
            try:
                # Answers once Ray has restarted it; bounded, since a restart can take a while.
                await asyncio.wait_for(link.handle.__ray_ready__.remote(), PROBE_TIMEOUT_S)
            except (RayActorError, TimeoutError):
                pass
            else:
                if not self._router.is_up(name, index):
                    generation = self._router.shard_up(name, index)
                    log.info("router: shard %d of %s answers again (generation %d)", index, name, generation)
                    self._wake_deployment(name)
                return
            if give_up_at is not None and loop.time() >= give_up_at:
                give_up_at = None
                if self._router.fail_over(name, index):
                    log.warning(
                        "router: shard %d of %s still away after %.1f s; its instruments go to the others",
                        index,
                        name,
                        self._failover_after_s,
                    )
                    self._wake_deployment(name)
            await asyncio.sleep(delay)  # retry pacing while Ray restarts the actor
            delay = min(delay * 2, 1.0)

    def _wake_deployment(self, name: str) -> None:
        for (deployment, _), link in self._links.items():
            if deployment == name:
                link.wake.set()

    async def _publish_quotes(self) -> None:
        interval = 1.0 / self._router.config.ui_snapshot_hz
        while True:
            quotes = self._router.quotes.publish_due(time.monotonic_ns())
            if quotes is not None and len(quotes):
                for listener in self._quote_listeners.values():
                    if listener.busy is not None and not listener.busy.done():
                        listener.skipped += 1
                        continue
                    ref = getattr(listener.handle, listener.method).remote(quotes)
                    listener.busy = asyncio.wrap_future(ref.future())
            await asyncio.sleep(interval)  # the snapshot rate, not a wait for a condition

    # -- restart -------------------------------------------------------------------------------

    def _record(self, **record: Any) -> None:
        if self._journal is not None:
            self._journal.append(record)

    async def _restored(self) -> None:
        """After a restart, rebuild the journaled routing table before anything else runs."""
        table, self._restore = self._restore, None
        if table is None:
            return
        journal, self._journal = self._journal, None  # replaying must not journal again
        try:
            for name, spec in table.deployments.items():
                universe = {int(iid): key for iid, key in spec["universe"]}
                await self.add_deployment(
                    name, universe, spec["shards"], spec["policy"], active=spec["active"]
                )
                for index, actor_name in sorted(table.shards.get(name, {}).items()):
                    try:
                        handle = ray.get_actor(actor_name, namespace=NAMESPACE)
                    except ValueError:
                        continue  # it will register itself when it starts
                    await self.register_shard(name, index, handle)
            for actor_name, method in table.listeners.items():
                try:
                    await self.register_quote_listener(actor_name, method)
                except ValueError:
                    log.warning("router: quote listener %s is gone", actor_name)
        finally:
            self._journal = journal
        log.info(
            "router: restored %d deployment(s) and %d listener(s) from the journal",
            len(table.deployments),
            len(table.listeners),
        )


@dataclass
class RoutingTable:
    """What a router must know again after a restart, folded from its journal records."""

    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    shards: dict[str, dict[int, str]] = field(default_factory=dict)
    listeners: dict[str, str] = field(default_factory=dict)

    @classmethod
    def replay(cls, records: Iterable[Mapping[str, Any]]) -> RoutingTable:
        table = cls()
        for r in records:
            op, name = r.get("op"), r.get("name", "")
            if op == "add":
                table.deployments[name] = dict(r)
                table.shards[name] = {}
            elif op == "remove":
                table.deployments.pop(name, None)
                table.shards.pop(name, None)
            elif op == "resize" and name in table.deployments:
                table.deployments[name]["shards"] = r["shards"]
                table.shards[name] = {k: v for k, v in table.shards[name].items() if k < r["shards"]}
            elif op == "active" and name in table.deployments:
                table.deployments[name]["active"] = r["active"]
            elif op == "shard" and name in table.deployments:
                table.shards[name][int(r["index"])] = r["actor"]
            elif op == "listener":
                table.listeners[name] = r["method"]
        return table


def _actor_name(handle: Any) -> str | None:
    """The registered name of a named actor handle (None for anonymous ones)."""
    try:
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry.get("namespace") == NAMESPACE:
                probe = ray.get_actor(entry["name"], namespace=NAMESPACE)
                if probe._actor_id == handle._actor_id:
                    return str(entry["name"])
    except Exception:  # looking the name up is best effort; the shard re-registers anyway
        return None
    return None


def router_actor_options(**overrides: Any) -> dict[str, Any]:
    """Ray options of the router: named, async with room for many concurrent pushes."""
    options: dict[str, Any] = {"name": ROUTER, "namespace": NAMESPACE, "max_concurrency": 1000}
    options.update(overrides)
    return options


def start_router(
    config: ShardlineConfig | RouterConfig, *, options: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    """Create the named router actor; `kwargs` go to `RouterActor`."""
    return ray.remote(RouterActor).options(**router_actor_options(**(options or {}))).remote(config, **kwargs)
