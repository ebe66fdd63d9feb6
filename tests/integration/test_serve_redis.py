"""The terminal with REDIS_URL set: replicas follow Redis pub/sub, and the hub actor relays to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from conftest import free_port, poll_until
from pydantic import SecretStr

from cluster.config import Secrets, load_config
from serve.hub import HUB_ACTOR_NAME, HUB_NAMESPACE, RedisHubPublisher

JWT_SECRET = "redis-integration-secret-0123456789-0123"


def _kill_hub() -> None:
    import ray

    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(HUB_ACTOR_NAME, namespace=HUB_NAMESPACE), no_restart=True)
    poll_until(lambda: not _hub_exists(), 30, "the old hub to go")


def _hub_exists() -> bool:
    import ray

    try:
        ray.get_actor(HUB_ACTOR_NAME, namespace=HUB_NAMESPACE)
        return True
    except ValueError:
        return False


@pytest.fixture(scope="module")
def terminal(ray_session: Any, redis_server: Any) -> Iterator[dict[str, Any]]:
    from ray import serve

    from serve.app import APP_NAME, run

    redis_server.client().flushall()
    _kill_hub()  # a hub from another module relays nowhere; this one must relay to Redis
    base = load_config()
    config = base.model_copy(update={"serve": base.serve.model_copy(update={"port": free_port()})})
    url = run(config, Secrets(shardline_jwt_secret=SecretStr(JWT_SECRET), redis_url=redis_server.url))
    poll_until(lambda: _ready_hub(url), 60, "the terminal's Redis feed")
    yield {"url": url, "ws": url.replace("http://", "ws://") + "/ws", "redis_url": redis_server.url}
    serve.delete(APP_NAME)
    _kill_hub()


def _ready_hub(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/ready", timeout=2).json()["checks"]["hub"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


async def _client(terminal: dict[str, Any], channel: str) -> Any:
    token = httpx.post(
        f"{terminal['url']}/api/v1/auth/login",
        json={"username": "viewer", "password": "viewer-local"},
        timeout=60,  # argon2 on a loaded machine
    ).json()["access_token"]
    ws = await websockets.connect(terminal["ws"])
    await ws.send(json.dumps({"type": "auth", "token": token}))
    await ws.send(json.dumps({"type": "subscribe", "channels": [channel]}))
    await _next(ws, lambda m: m.get("type") == "snapshot")  # subscribed: updates from now on reach us
    return ws


async def _next(ws: Any, match: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            data = json.loads(await ws.recv())
            for message in data if isinstance(data, list) else [data]:
                if match(message):
                    return dict(message)


async def _next_update(ws: Any, key: str) -> dict[str, Any]:
    return await _next(ws, lambda m: m.get("type") == "update" and m.get("key") == key)


async def test_a_publish_to_redis_reaches_a_websocket_client(terminal: dict[str, Any]) -> None:
    ws = await _client(terminal, "alerts")
    publisher = RedisHubPublisher(terminal["redis_url"])
    publisher.publish([("alerts", "redis-1", {"level": "info", "message": "through redis"})])
    update = await _next_update(ws, "redis-1")
    assert update["data"]["message"] == "through redis"
    publisher.close()
    await ws.close()


async def test_the_hub_actor_relays_to_redis(terminal: dict[str, Any]) -> None:
    import ray

    hub = ray.get_actor(HUB_ACTOR_NAME, namespace=HUB_NAMESPACE)
    ws = await _client(terminal, "quote:NSE:3045")
    await hub.publish.remote([("quote:NSE:3045", "", {"ltp": 81_255, "ts_ns": 1})])
    update = await _next_update(ws, "")
    assert update["data"]["ltp"] == "812.55"
    # The latest state is kept in Redis for replicas that start later.
    stored = RedisHubPublisher(terminal["redis_url"])._redis.hget("shardline:hub:latest", "quote:NSE:3045|")
    assert stored is not None
    await ws.close()
