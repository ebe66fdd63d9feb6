"""The terminal's fan-out hub: the router, execution and portfolio publish; Serve replicas read.

Two transports behind one contract:

* **Ray** (the embedded default): a named async actor ``hub`` holding the latest state of every
  (channel, key). Each replica long-polls it with a cursor (``poll(since)``), once for all of its
  clients; a replica that starts late or falls behind gets current state, never a backlog.
* **Redis** (when ``REDIS_URL`` is set): publishers write the latest state to a hash and announce it
  on one pub/sub channel; replicas read the hash once at start, then follow the pub/sub channel.

Publishing contract, for the actors that publish (prices in integer paise, as in transport)::

    publisher = connect_publisher(redis_url)            # once, at actor start
    publisher.publish([("quote:NSE:3045", "", {...}),    # (channel, key, data) triples
                       ("orders", client_order_id, msgspec.to_builtins(order_update))])

``key`` conflates within a channel: "" for one state per channel (quotes, depth), the order id for
``orders``, ``"<book>|<instrument>|<product>"`` for ``positions``, the deployment name for
``deployments``, a unique id for ``alerts``. ``orders`` entries merge (a later update keeps fields
it does not carry, such as the side a terminal order was placed with). A publisher that knows
instruments by catalog iid only may publish on the bare channel ``quote`` with the iid as key;
replicas resolve it with their own catalog (the same file gives the same iids). Payload fields are
listed in ``docs/api.md``.

The hub actor also listens, so the trading actors need not know about the terminal: it registers
itself with the execution actor (``on_order_updates``) and the router (``on_quotes``), refreshes
positions from the portfolio after fills, follows the deployments actor, and turns the supervisor's
health board into alerts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import Enum
from fractions import Fraction
from typing import Any, Protocol

import msgspec

logger = logging.getLogger(__name__)

HUB_ACTOR_NAME = "hub"
HUB_NAMESPACE = "shardline"
REDIS_CHANNEL = "shardline:hub"
REDIS_LATEST_KEY = "shardline:hub:latest"
# Event channels are not kept as latest state in Redis: they would only accumulate.
EVENT_CHANNELS = frozenset({"alerts"})
# Channels whose entries merge field by field instead of being replaced.
MERGE_CHANNELS = frozenset({"orders"})
TERMINAL_STATUSES = frozenset({"FILLED", "CANCELLED", "REJECTED"})

Update = tuple[str, str, dict[str, Any]]  # (channel, key, data) as published


class HubUpdate(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    channel: str
    key: str
    data: dict[str, Any]


class LatestStateHub:
    """Latest data per (channel, key), each stamped with a rising sequence number.

    Entries are kept in sequence order (a republished key moves to the end), so ``since(seq)``
    walks back from the newest entry and costs only what changed.

    Parameters
    ----------
    max_entries
        Bound on distinct (channel, key) pairs held; the least recently published go first.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], HubUpdate] = OrderedDict()
        self._stamps: dict[tuple[str, str], tuple[str, int]] = {}
        self.seq = 0
        self.published = 0
        self.evicted = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._entries)

    def publish(self, updates: Iterable[Update], origin: str | None = None, origin_seq: int = 0) -> int:
        """Store updates; return the sequence number of the last one.

        ``origin`` and ``origin_seq`` (a publisher's id and its own rising call count) let the hub
        drop a call that arrives after a later one from the same publisher: Ray does not keep the
        order of calls to an async actor.
        """
        entries = self._entries
        stamps = self._stamps
        for channel, key, data in updates:
            ident = (channel, key)
            if origin is not None:
                stamp = stamps.get(ident)
                if stamp is not None and stamp[0] == origin and stamp[1] > origin_seq:
                    self.stale += 1
                    continue
                stamps[ident] = (origin, origin_seq)
            self.seq += 1
            old = entries.pop(ident, None)
            if old is not None and channel in MERGE_CHANNELS:
                data = {**old.data, **data}
            entries[ident] = HubUpdate(self.seq, channel, key, data)
            self.published += 1
        while len(entries) > self._max_entries:
            ident, _ = entries.popitem(last=False)
            stamps.pop(ident, None)
            self.evicted += 1
        return self.seq

    def get(self, channel: str, key: str) -> dict[str, Any] | None:
        entry = self._entries.get((channel, key))
        return entry.data if entry is not None else None

    def since(self, seq: int, limit: int = 50_000) -> tuple[int, list[HubUpdate]]:
        """Entries published after ``seq`` (oldest first, at most ``limit``) and the new cursor."""
        changed: list[HubUpdate] = []
        for entry in reversed(self._entries.values()):
            if entry.seq <= seq:
                break
            changed.append(entry)
        changed.reverse()
        if len(changed) > limit:
            changed = changed[:limit]
            return changed[-1].seq, changed
        return self.seq, changed

    def stats(self) -> dict[str, int]:
        return {
            "seq": self.seq,
            "entries": len(self._entries),
            "published": self.published,
            "evicted": self.evicted,
            "stale": self.stale,
        }


def quote_updates(quotes: Any) -> list[Update]:
    """Router quote rows (``QUOTE_DTYPE``: iid, ltp, bid, ask, volume, ts_exchange_ns) as bare-channel
    updates keyed by iid."""
    names = [n for n in quotes.dtype.names if n != "iid"]
    columns = {n: quotes[n].tolist() for n in names}
    out: list[Update] = []
    for row, iid in enumerate(quotes["iid"].tolist()):
        data = {("ts_ns" if n == "ts_exchange_ns" else n): columns[n][row] for n in names}
        out.append(("quote", str(iid), data))
    return out


def order_update_data(update: Any) -> dict[str, Any]:
    """An `OrderUpdate` as hub data: the fill is summarised, not nested."""
    data = msgspec.to_builtins(update)
    fill = data.pop("fill", None)
    if fill:
        data["last_fill"] = {k: fill[k] for k in ("trade_id", "quantity", "price", "ts_ns") if k in fill}
    return data


class HubActor:
    """Async Ray actor shell around `LatestStateHub`; wrap with ``ray.remote`` where it is started.

    Parameters
    ----------
    max_entries
        Bound on the (channel, key) pairs held.
    redis_url
        When set, every update is also relayed to Redis, where the replicas read it.
    namespace
        Where the execution, router, portfolio and supervisor actors are found.
    attach_interval_s
        How often the hub (re)registers as a listener and polls deployments; registrations are
        idempotent, so a restarted router or execution actor is picked up again.
    """

    def __init__(
        self,
        max_entries: int = 200_000,
        redis_url: str | None = None,
        namespace: str = HUB_NAMESPACE,
        attach_interval_s: float = 2.0,
    ) -> None:
        self._hub = LatestStateHub(max_entries)
        self._changed = asyncio.Event()
        self._relay = RedisHubPublisher(redis_url) if redis_url else None
        self._relay_lock = asyncio.Lock()
        self._namespace = namespace
        self._attach_interval_s = attach_interval_s
        self._attach_task: asyncio.Task[None] | None = None
        self._positions_task: asyncio.Task[None] | None = None
        self._health: dict[str, bool] = {}
        self._alerted: set[str] = set()
        self.attached: dict[str, bool] = {}

    async def publish(self, updates: list[Update], origin: str | None = None, origin_seq: int = 0) -> int:
        seq = self._hub.publish(updates, origin, origin_seq)
        if self._relay is not None:
            # One relay at a time, each sending the state as it stands when it goes, so Redis never
            # ends on an older state than the hub's.
            async with self._relay_lock:
                relayed = [(c, k, self._hub.get(c, k) or d) for c, k, d in updates]
                await asyncio.to_thread(self._relay.publish, relayed)
        # Wake every waiting poll, then arm a fresh event for the next round.
        self._changed.set()
        self._changed = asyncio.Event()
        return seq

    # The trading actors call these ------------------------------------------------------------

    async def on_order_update(self, update: Any) -> None:
        await self.on_order_updates([update])

    async def on_order_updates(self, updates: list[Any]) -> None:
        """From the execution actor, for every book's orders, in order. The calls are sent without
        waiting, so they may arrive out of order: an order never goes back from finished, nor its
        filled quantity down."""
        latest: dict[str, dict[str, Any]] = {}
        filled = False
        for update in updates:
            data = order_update_data(update)
            client_order_id = data["client_order_id"]
            current = latest.get(client_order_id) or self._hub.get("orders", client_order_id) or {}
            if current.get("status") in TERMINAL_STATUSES and data["status"] not in TERMINAL_STATUSES:
                continue
            if data.get("filled_quantity", 0) < current.get("filled_quantity", 0):
                continue
            latest[client_order_id] = data
            filled = filled or update.fill is not None or bool(update.filled_quantity)
        if latest:
            await self.publish([("orders", coid, data) for coid, data in latest.items()])
        if filled:
            self._refresh_positions_soon()

    async def on_quotes(self, quotes: Any) -> None:
        """From the router, changed quotes at its UI snapshot rate."""
        if len(quotes):
            await self.publish(quote_updates(quotes))

    # Listening and polling --------------------------------------------------------------------

    async def attach(self) -> dict[str, bool]:
        """Start (once) the loop that keeps the hub registered and deployments followed."""
        if self._attach_task is None:
            self._attach_task = asyncio.get_running_loop().create_task(self._attach_loop())
        return self.attached

    async def _attach_loop(self) -> None:
        while True:
            await self._attach_once()
            await asyncio.sleep(self._attach_interval_s)  # a polling period, not a wait for a condition

    async def _attach_once(self) -> None:
        import ray

        async def call(actor: str, method: str, *args: Any) -> Any:
            try:
                handle = ray.get_actor(actor, namespace=self._namespace)
                return await asyncio.wait_for(getattr(handle, method).remote(*args), 5.0)
            except Exception as err:  # not started yet, restarting, or without that method
                logger.debug("hub: %s.%s failed: %s", actor, method, err)
                return None

        if not ray.is_initialized():
            return
        first = not any(self.attached.values())
        self.attached["execution"] = bool(await call("execution", "register_listener", HUB_ACTOR_NAME))
        self.attached["router"] = await call(
            "router", "register_quote_listener", HUB_ACTOR_NAME, "on_quotes"
        ) is None and self._actor_exists("router")
        deployments = await call("deployments", "deployments")
        if deployments is not None:
            await self._publish_deployments(deployments)
        status = await call("supervisor", "status")
        if status:
            await self._publish_health(status)
        if first and self.attached["execution"]:
            self._refresh_positions_soon()

    def _actor_exists(self, name: str) -> bool:
        import ray

        try:
            ray.get_actor(name, namespace=self._namespace)
            return True
        except ValueError:
            return False

    async def _publish_deployments(self, deployments: list[dict[str, Any]]) -> None:
        updates: list[Update] = []
        for summary in deployments:
            data = {k: v for k, v in _plain(summary).items() if k != "history"}
            if self._hub.get("deployments", data["name"]) != data:
                updates.append(("deployments", data["name"], data))
        if updates:
            await self.publish(updates)

    async def _publish_health(self, status: dict[str, Any]) -> None:
        actors = {a.get("name"): a for a in status.get("actors", [])}
        updates: list[Update] = []
        for name, actor in actors.items():
            # Alert on a change from healthy only: actors still starting up are not news.
            now_healthy = bool(actor.get("healthy", True))
            was_healthy = self._health.get(str(name))
            self._health[str(name)] = now_healthy
            if was_healthy and not now_healthy:
                reason = actor.get("error") or "not answering"
                message = {"level": "error", "message": f"{name}: {reason}"}
                updates.append(("alerts", f"unhealthy-{name}-{time.time_ns()}", message))
            elif was_healthy is False and now_healthy and name in self._alerted:
                message = {"level": "info", "message": f"{name} is healthy again"}
                updates.append(("alerts", f"healthy-{name}-{time.time_ns()}", message))
            if was_healthy and not now_healthy:
                self._alerted.add(str(name))
            elif now_healthy:
                self._alerted.discard(str(name))
        if updates:
            await self.publish(updates)

    def _refresh_positions_soon(self) -> None:
        if self._positions_task is None or self._positions_task.done():
            self._positions_task = asyncio.get_running_loop().create_task(self._refresh_positions())

    async def _refresh_positions(self) -> None:
        import ray

        await asyncio.sleep(0.05)  # let a burst of fills settle into one refresh
        if not ray.is_initialized():  # a hub outside Ray (tests): no portfolio to ask
            return
        try:
            portfolio = ray.get_actor("portfolio", namespace=self._namespace)
            positions: list[Any] = await asyncio.wait_for(portfolio.positions.remote(None), 5.0)
        except Exception as err:
            logger.debug("hub: positions refresh failed: %s", err)
            return
        updates: list[Update] = []
        for position in positions:
            data = _plain(
                msgspec.to_builtins(position, builtin_types=(Fraction,))
                if isinstance(position, msgspec.Struct)
                else position
            )
            key = f"{data['book']}|{data['instrument']}|{data['product']}"
            updates.append(("positions", key, data))
        if updates:
            await self.publish(updates)

    async def poll(
        self, since: int, timeout_s: float = 1.0, limit: int = 50_000
    ) -> tuple[int, list[HubUpdate]]:
        """Changes after ``since``; waits up to ``timeout_s`` for some when there are none yet."""
        if self._hub.seq < since:  # the hub restarted: give the caller everything from the start
            since = 0
        if self._hub.seq == since:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), timeout_s)
            except TimeoutError:
                return since, []
        return self._hub.since(since, limit)

    async def stats(self) -> dict[str, Any]:
        return {**self._hub.stats(), "attached": dict(self.attached), "pid": os.getpid()}


def _plain(value: Any) -> Any:
    """A dataclass (the portfolio's views) as plain data; exact fractions of a paisa rounded half-even
    to whole paise, the hub's unit (and what msgpack can carry to Redis)."""
    if isinstance(value, Fraction):
        return round(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


def get_or_create_hub_actor(redis_url: str | None = None) -> Any:
    """The named hub actor, started (detached, zero CPU) and attached if no one has started it yet."""
    import ray

    try:
        return ray.get_actor(HUB_ACTOR_NAME, namespace=HUB_NAMESPACE)
    except ValueError:
        pass
    hub: Any = (
        ray.remote(HubActor)
        .options(
            name=HUB_ACTOR_NAME,
            namespace=HUB_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_concurrency=1000,
            max_restarts=-1,
        )
        .remote(redis_url=redis_url)
    )
    hub.attach.remote()
    return hub


# Publishers ---------------------------------------------------------------------------------------


class HubPublisher(Protocol):
    def publish(self, updates: Sequence[Update]) -> None: ...


class RayHubPublisher:
    """Fire-and-forget publishing to the hub actor: a publisher never waits on the terminal.

    Each call carries this publisher's id and call count, so the hub can drop a call that Ray
    delivered after a later one.
    """

    def __init__(self, handle: Any | None = None) -> None:
        self._handle = handle if handle is not None else get_or_create_hub_actor()
        self._origin = uuid.uuid4().hex
        self._calls = 0

    def publish(self, updates: Sequence[Update]) -> None:
        if updates:
            self._calls += 1
            self._handle.publish.remote(list(updates), self._origin, self._calls)


class RedisHubPublisher:
    """Latest state into a Redis hash and an announcement on one pub/sub channel, in one round trip."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._encode = msgspec.msgpack.Encoder().encode

    def publish(self, updates: Sequence[Update]) -> None:
        if not updates:
            return
        pipe = self._redis.pipeline(transaction=False)
        batch = []
        for channel, key, data in updates:
            batch.append((channel, key, data))
            if channel not in EVENT_CHANNELS:
                pipe.hset(REDIS_LATEST_KEY, f"{channel}|{key}", self._encode(data))
        pipe.publish(REDIS_CHANNEL, self._encode(batch))
        pipe.execute()

    def close(self) -> None:
        self._redis.close()


def connect_publisher(redis_url: str | None = None) -> HubPublisher:
    """The publisher for this deployment: Redis when a URL is given, the Ray hub actor otherwise."""
    return RedisHubPublisher(redis_url) if redis_url else RayHubPublisher()


# Subscribers (one per Serve replica) --------------------------------------------------------------

Deliver = Callable[[list[HubUpdate]], None]


class HubFeed(Protocol):
    async def run(self, deliver: Deliver, ready: asyncio.Event) -> None: ...


class RayHubFeed:
    """Follows the hub actor with a cursor; reconnects when the actor restarts."""

    def __init__(
        self, poll_timeout_s: float = 1.0, handle_factory: Callable[[], Any] = get_or_create_hub_actor
    ):
        self._poll_timeout_s = poll_timeout_s
        self._handle_factory = handle_factory
        self.cursor = 0

    async def run(self, deliver: Deliver, ready: asyncio.Event) -> None:
        handle = None
        backoff = 0.1
        while True:
            try:
                if handle is None:
                    handle = await asyncio.to_thread(self._handle_factory)
                assert handle is not None
                cursor, changed = await handle.poll.remote(self.cursor, self._poll_timeout_s)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the actor died or is restarting: back off and look it up again
                logger.warning("hub poll failed (%s); retrying in %.1fs", err, backoff)
                handle = None
                await _pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.cursor = cursor
            if changed:
                deliver(changed)
            ready.set()


class RedisHubFeed:
    """Reads the latest-state hash once, then follows the pub/sub channel."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._decode = msgspec.msgpack.Decoder().decode

    async def run(self, deliver: Deliver, ready: asyncio.Event) -> None:
        import redis.asyncio as aioredis

        backoff = 0.1
        while True:
            client = aioredis.Redis.from_url(self._url)
            pubsub = client.pubsub()
            try:
                # Subscribe before reading the hash, so nothing published in between is missed.
                await pubsub.subscribe(REDIS_CHANNEL)
                latest = await client.hgetall(REDIS_LATEST_KEY)
                snapshot = []
                for field, value in latest.items():
                    channel, _, key = _text(field).partition("|")  # channels never hold "|"
                    snapshot.append(HubUpdate(0, channel, key, self._decode(_bytes(value))))
                if snapshot:
                    deliver(snapshot)
                ready.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    batch = self._decode(message["data"])
                    deliver([HubUpdate(0, channel, key, data) for channel, key, data in batch])
            except asyncio.CancelledError:
                raise
            except Exception as err:
                logger.warning("redis hub feed failed (%s); reconnecting in %.1fs", err, backoff)
                await _pause(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await pubsub.aclose()
                await client.aclose()


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pause(seconds: float) -> Awaitable[None]:
    return asyncio.sleep(seconds)  # a reconnect back-off, not a wait for a condition


def connect_feed(redis_url: str | None = None) -> HubFeed:
    return RedisHubFeed(redis_url) if redis_url else RayHubFeed()
