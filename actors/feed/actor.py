"""FeedActor: owns one login's SmartStream sockets and pushes decoded tick batches to the router.

The SmartStream client batches and decodes; this shell only forwards. Awaiting the router's
`push` before the next batch is the back-pressure path: a router (or shard, under `block`) that
falls behind slows the socket reads instead of losing ticks.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import numpy as np
import ray

from actors.angel.auth import AngelCredentials
from actors.angel.factories import AngelEndpoints, connect
from actors.angel.stream import FEED_MODES, SmartStreamClient
from actors.feed.subscriptions import SubscriptionBook
from actors.restart import start_on_self
from cluster.config import ShardlineConfig
from cluster.topology import NAMESPACE, ROUTER


class FeedActor:
    def __init__(
        self,
        config: ShardlineConfig,
        keys: list[str],
        endpoints: AngelEndpoints,
        credentials: AngelCredentials,
    ) -> None:
        from catalog.sources import load_default_catalog

        self._config = config
        self._initial_keys = keys
        self._mode = FEED_MODES[config.feed.mode]
        self._book = SubscriptionBook()
        catalog = load_default_catalog(config)
        self._iid_by_key = {key: iid for iid, key in enumerate(catalog.keys())}
        self._connection = connect(credentials, endpoints, config.data_path)
        self._client: SmartStreamClient | None = None
        self._starting = asyncio.Lock()  # bound to the actor's loop at first use
        self._router: Any = None
        self._ticks_out = 0
        self._batches = 0
        self._push_wait_ns = 0
        self._push_errors = 0
        self._started_ns = time.time_ns()
        start_on_self("start")

    async def start(self) -> int:
        """Open the sockets and subscribe the topology's instruments (idempotent: the actor calls it
        on itself, and the launcher and supervisor may too)."""
        async with self._starting:
            if self._client is None:
                self._router = ray.get_actor(ROUTER, namespace=NAMESPACE)
                client = self._connection.stream_client(self._iid_by_key, self._forward, self._config.feed)
                await client.start()
                self._client = client
                await self.subscribe("topology", self._initial_keys)
        return len(self._book)

    async def _forward(self, ticks: np.ndarray) -> None:
        started = time.perf_counter_ns()
        try:
            await self._router.push.remote(ticks)
        except ray.exceptions.RayActorError:
            # The router is restarting: these ticks are lost to it and counted here, the feed goes on.
            self._push_errors += len(ticks)
            return
        self._push_wait_ns += time.perf_counter_ns() - started
        self._ticks_out += len(ticks)
        self._batches += 1

    async def subscribe(self, owner: str, keys: list[str]) -> list[str]:
        """Hold `keys` for `owner` (a deployment or a terminal user); subscribes new ones."""
        unknown = [k for k in keys if k not in self._iid_by_key]
        if unknown:
            raise ValueError(f"unknown instruments (not in the catalog): {', '.join(unknown[:5])}")
        added = self._book.acquire(owner, keys)
        if added and self._client is not None:
            await self._client.subscribe(added, self._mode)
        return added

    async def unsubscribe(self, owner: str, keys: list[str] | None = None) -> list[str]:
        removed = self._book.release(owner, keys)
        if removed and self._client is not None:
            await self._client.unsubscribe(removed, self._mode)
        return removed

    async def wait_connected(self, timeout_s: float = 10.0) -> int:
        assert self._client is not None, "start() first"
        await self._client.wait_connected(timeout_s)
        return self._client.open_connections()

    def stats(self) -> dict[str, Any]:
        client = self._client.counters() if self._client is not None else {}
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id()[:12],
            "state": "running" if client.get("open_connections") else "connecting",
            "ticks_out": self._ticks_out,
            "batches": self._batches,
            "push_wait_s": round(self._push_wait_ns / 1e9, 3),
            "lost_router_restarting": self._push_errors,
            "subscriptions": len(self._book),
            "owners": self._book.owners(),
            "stream": client,
        }

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.stop()
            self._client = None
        await self._connection.close()
