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
``orders``, ``"<book>|<instrument>"`` for ``positions``, the deployment name for ``deployments``, a
unique id for ``alerts``. Payload fields are listed in ``docs/api.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

logger = logging.getLogger(__name__)

HUB_ACTOR_NAME = "hub"
HUB_NAMESPACE = "shardline"
REDIS_CHANNEL = "shardline:hub"
REDIS_LATEST_KEY = "shardline:hub:latest"
# Event channels are not kept as latest state in Redis: they would only accumulate.
EVENT_CHANNELS = frozenset({"alerts"})

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
        self.seq = 0
        self.published = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def publish(self, updates: Iterable[Update]) -> int:
        """Store updates; return the sequence number of the last one."""
        entries = self._entries
        for channel, key, data in updates:
            self.seq += 1
            ident = (channel, key)
            if ident in entries:
                del entries[ident]
            entries[ident] = HubUpdate(self.seq, channel, key, data)
            self.published += 1
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
            self.evicted += 1
        return self.seq

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
        }


class HubActor:
    """Async Ray actor shell around `LatestStateHub`; wrap with ``ray.remote`` where it is started."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._hub = LatestStateHub(max_entries)
        self._changed = asyncio.Event()

    async def publish(self, updates: list[Update]) -> int:
        seq = self._hub.publish(updates)
        # Wake every waiting poll, then arm a fresh event for the next round.
        self._changed.set()
        self._changed = asyncio.Event()
        return seq

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

    async def stats(self) -> dict[str, int]:
        return self._hub.stats()


def get_or_create_hub_actor() -> Any:
    """The named hub actor, started (detached, zero CPU) if no one has started it yet."""
    import ray

    try:
        return ray.get_actor(HUB_ACTOR_NAME, namespace=HUB_NAMESPACE)
    except ValueError:
        pass
    return (
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
        .remote()
    )


# Publishers ---------------------------------------------------------------------------------------


class HubPublisher(Protocol):
    def publish(self, updates: Sequence[Update]) -> None: ...


class RayHubPublisher:
    """Fire-and-forget publishing to the hub actor: a publisher never waits on the terminal."""

    def __init__(self, handle: Any | None = None) -> None:
        self._handle = handle if handle is not None else get_or_create_hub_actor()

    def publish(self, updates: Sequence[Update]) -> None:
        if updates:
            self._handle.publish.remote(list(updates))


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
