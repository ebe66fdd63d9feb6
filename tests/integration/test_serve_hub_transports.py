"""The terminal hub on real transports: the Ray hub actor (with a restart) and Redis pub/sub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from serve.hub import (
    REDIS_LATEST_KEY,
    HubActor,
    HubUpdate,
    RayHubFeed,
    RayHubPublisher,
    RedisHubFeed,
    RedisHubPublisher,
)


class Collector:
    """Receives what a feed delivers; `wait_for` waits (with a deadline) until a condition holds."""

    def __init__(self) -> None:
        self.updates: list[HubUpdate] = []
        self.changed = asyncio.Event()

    def deliver(self, updates: list[HubUpdate]) -> None:
        self.updates.extend(updates)
        self.changed.set()

    def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(u.channel, u.key): u.data for u in self.updates}

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def run_feed(feed: Any, collector: Collector) -> tuple[asyncio.Task[None], asyncio.Event]:
    ready = asyncio.Event()
    task = asyncio.create_task(feed.run(collector.deliver, ready))
    await asyncio.wait_for(ready.wait(), 60)
    return task, ready


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ray_hub_feed_follows_publishes_and_survives_a_hub_restart(ray_session: Any) -> None:
    import ray

    options = {"name": "hub-restart-test", "max_restarts": -1, "num_cpus": 0, "max_concurrency": 100}
    hub: Any = ray.remote(HubActor).options(namespace="shardline", **options).remote()
    publisher = RayHubPublisher(hub)
    publisher.publish([("quote:NSE:3045", "", {"ltp": 100})])
    collector = Collector()
    feed = RayHubFeed(poll_timeout_s=0.5, handle_factory=lambda: hub)
    task, _ = await run_feed(feed, collector)
    await collector.wait_for(lambda: collector.latest().get(("quote:NSE:3045", "")) == {"ltp": 100})
    publisher.publish([("orders", "A", {"status": "OPEN"}), ("orders", "A", {"status": "FILLED"})])
    await collector.wait_for(lambda: collector.latest().get(("orders", "A")) == {"status": "FILLED"})
    assert feed.cursor >= 3

    ray.kill(hub, no_restart=False)  # Ray restarts it empty; the feed's cursor is now ahead of it

    async def publish_until_seen() -> None:
        for attempt in range(200):
            publisher.publish([("alerts", f"after-{attempt}", {"message": "back"})])
            try:
                await collector.wait_for(lambda: any(u.channel == "alerts" for u in collector.updates), 0.25)
                return
            except TimeoutError:
                continue
        raise AssertionError("the feed never caught up with the restarted hub")

    await publish_until_seen()
    await stop(task)
    ray.kill(hub, no_restart=True)


async def test_redis_hub_snapshot_then_pubsub(redis_url: str) -> None:
    publisher = RedisHubPublisher(redis_url)
    publisher.publish(
        [
            ("quote:NSE:3045", "", {"ltp": 81_255}),
            ("positions", "manual|NSE:3045", {"quantity": 5}),
            ("alerts", "a-1", {"message": "not kept as state"}),
        ]
    )
    stored: list[bytes] = publisher._redis.hkeys(REDIS_LATEST_KEY)  # type: ignore[assignment]
    assert sorted(k.decode() for k in stored) == ["positions|manual|NSE:3045", "quote:NSE:3045|"]

    collector = Collector()
    task, _ = await run_feed(RedisHubFeed(redis_url), collector)
    # A late joiner gets the latest state from the hash (events are not state)...
    assert collector.latest() == {
        ("quote:NSE:3045", ""): {"ltp": 81_255},
        ("positions", "manual|NSE:3045"): {"quantity": 5},
    }
    # ...then follows pub/sub.
    publisher.publish([("quote:NSE:3045", "", {"ltp": 81_300}), ("alerts", "a-2", {"message": "live"})])
    await collector.wait_for(lambda: collector.latest().get(("alerts", "a-2")) == {"message": "live"})
    assert collector.latest()[("quote:NSE:3045", "")] == {"ltp": 81_300}
    await stop(task)
    publisher.close()


async def test_redis_hub_feed_reconnects_after_a_server_restart(
    make_redis_server: Callable[[], Any],
) -> None:
    server = make_redis_server()
    collector = Collector()
    task, _ = await run_feed(RedisHubFeed(server.url), collector)
    server.stop(hard=True)
    server.start()  # same port, same data directory
    publisher = RedisHubPublisher(server.url)

    async def publish_until_seen() -> None:
        for attempt in range(200):
            publisher.publish([("alerts", f"r-{attempt}", {"message": "after restart"})])
            try:
                await collector.wait_for(lambda: any(u.channel == "alerts" for u in collector.updates), 0.25)
                return
            except TimeoutError:
                continue
        raise AssertionError("the feed did not come back after redis restarted")

    await publish_until_seen()
    await stop(task)
    publisher.close()
