"""Candles, depth and previous closes for the terminal, from the broker's REST API (or the simulator's).

One named actor (``marketdata``) holds one login and one rate limiter, so however many terminal
replicas ask, the broker sees one client pacing itself inside Angel's limits. It runs on the node
with the broker's registered IP (the execution actor's pin), with short caches: a chart opened by
ten traders costs one candle request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from cluster.config import Mode, Secrets, ShardlineConfig

logger = logging.getLogger(__name__)

MARKETDATA_ACTOR_NAME = "marketdata"
IST = timezone(timedelta(hours=5, minutes=30))

# The terminal's intervals as Angel names them.
ANGEL_INTERVALS = {
    "1m": "ONE_MINUTE",
    "3m": "THREE_MINUTE",
    "5m": "FIVE_MINUTE",
    "15m": "FIFTEEN_MINUTE",
    "30m": "THIRTY_MINUTE",
    "1h": "ONE_HOUR",
    "1d": "ONE_DAY",
}
QUOTE_BATCH = 50  # Angel's cap on tokens per quote call


class TtlCache:
    """A small LRU whose entries expire ``ttl_s`` after they were stored; time is passed in."""

    def __init__(self, ttl_s: float, max_entries: int = 512) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any, now: float) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self.ttl_s:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Any, value: Any, now: float) -> None:
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class BrokerMarketData:
    """Candles, depth and closes over an Angel REST client (plain: no Ray).

    Parameters
    ----------
    rest
        An `AngelRestClient` (or anything with its ``candles`` and ``quote`` coroutines).
    clock
        Wall time in seconds, for the caches.
    """

    def __init__(self, rest: Any, clock: Callable[[], float] = time.time) -> None:
        self._rest = rest
        self._clock = clock
        self._candles = TtlCache(ttl_s=5.0)
        self._quotes = TtlCache(ttl_s=0.5, max_entries=4096)
        self._closes = TtlCache(ttl_s=3600.0, max_entries=100_000)
        self._inflight: dict[Any, asyncio.Future[Any]] = {}

    async def candles(self, instrument: str, interval: str, start_s: int, end_s: int) -> list[dict[str, int]]:
        """Bars in [start_s, end_s] as dicts (time in epoch seconds, prices in minor units)."""
        from actors.angel.common import CandleInterval

        try:
            angel_interval = CandleInterval(ANGEL_INTERVALS[interval])
        except KeyError:
            raise ValueError(f"interval: one of {', '.join(ANGEL_INTERVALS)}") from None
        # Angel takes exchange-local (IST) naive times.
        start = datetime.fromtimestamp(start_s, IST).replace(tzinfo=None)
        end = datetime.fromtimestamp(end_s, IST).replace(tzinfo=None)
        key = (instrument, interval, start_s // 60, end_s // 60)
        cached = self._candles.get(key, self._clock())
        if cached is not None:
            return list(cached)
        bars = await self._once(key, lambda: self._rest.candles(instrument, angel_interval, start, end))
        rows = [
            {
                "time": bar.ts_ns // 1_000_000_000,
                "open": bar.open,
                "high": bar.high,
                "low": bar.low,
                "close": bar.close,
                "volume": bar.volume,
            }
            for bar in bars
        ]
        self._candles.put(key, rows, self._clock())
        return rows

    async def quotes(self, instruments: Sequence[str]) -> dict[str, dict[str, Any]]:
        """FULL quotes (with five levels of depth) by instrument; ones the broker has not are left out."""
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        missing = []
        for key in dict.fromkeys(instruments):
            cached = self._quotes.get(key, now)
            if cached is None:
                missing.append(key)
            else:
                out[key] = cached
        for start in range(0, len(missing), QUOTE_BATCH):
            chunk = missing[start : start + QUOTE_BATCH]
            for quote in await self._rest.quote(chunk, "FULL"):
                data = {
                    "ltp": quote.ltp,
                    "open": quote.open,
                    "high": quote.high,
                    "low": quote.low,
                    "close": quote.close,
                    "volume": quote.volume,
                    "oi": quote.oi,
                    "upper_circuit": quote.upper_circuit,
                    "lower_circuit": quote.lower_circuit,
                    # Levels as named fields, so the edge converts their prices like any other.
                    "bids": [{"price": p, "quantity": q, "orders": o} for p, q, o in quote.bids],
                    "asks": [{"price": p, "quantity": q, "orders": o} for p, q, o in quote.asks],
                }
                self._quotes.put(quote.instrument, data, self._clock())
                self._closes.put(quote.instrument, quote.close, self._clock())
                out[quote.instrument] = data
        return out

    async def closes(self, instruments: Sequence[str]) -> dict[str, int]:
        """Previous closes (minor units), from the cache or one FULL quote per 50 instruments."""
        now = self._clock()
        wanted = [k for k in dict.fromkeys(instruments) if self._closes.get(k, now) is None]
        if wanted:
            await self.quotes(wanted)
        now = self._clock()
        return {k: v for k in instruments if (v := self._closes.get(k, now)) is not None}

    async def _once(self, key: Any, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """Concurrent asks for the same thing share one broker call."""
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await fetch()
            future.set_result(result)
            return result
        except Exception as err:
            future.set_exception(err)
            future.exception()  # retrieved here, so an unawaited failure does not warn
            raise
        finally:
            del self._inflight[key]


class MarketDataActor:
    """Ray actor shell: logs in lazily (on the first call) and serves `BrokerMarketData`."""

    def __init__(self, config: ShardlineConfig) -> None:
        self._config = config
        self._data: BrokerMarketData | None = None
        self._lock = asyncio.Lock()
        self._calls = 0
        self._errors = 0

    async def _desk(self) -> BrokerMarketData:
        async with self._lock:
            if self._data is None:
                from actors.angel.factories import AngelEndpoints, connect_from_config

                endpoints = None
                if self._config.mode in (Mode.SIM, Mode.SIM_LIVE):
                    import ray

                    try:
                        sim = ray.get_actor("sim", namespace="shardline")
                    except ValueError:
                        raise ConnectionError("the simulator is not running") from None
                    urls = await sim.urls.remote()
                    endpoints = AngelEndpoints(urls["rest_url"], urls["stream_url"], urls["order_url"])
                connection = connect_from_config(self._config, Secrets(), endpoints)
                self._data = BrokerMarketData(connection.rest)
            return self._data

    async def candles(self, instrument: str, interval: str, start_s: int, end_s: int) -> list[dict[str, int]]:
        return await self._count((await self._desk()).candles(instrument, interval, start_s, end_s))

    async def quotes(self, instruments: list[str]) -> dict[str, dict[str, Any]]:
        return await self._count((await self._desk()).quotes(instruments))

    async def closes(self, instruments: list[str]) -> dict[str, int]:
        return await self._count((await self._desk()).closes(instruments))

    async def _count(self, call: Awaitable[Any]) -> Any:
        self._calls += 1
        try:
            return await call
        except Exception:
            self._errors += 1
            raise

    async def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "calls": self._calls,
            "errors": self._errors,
            "logged_in": self._data is not None,
        }


def get_or_create_marketdata_actor(config: ShardlineConfig) -> Any:
    """The named market-data actor, pinned like the execution actor to the broker's node."""
    import ray

    try:
        return ray.get_actor(MARKETDATA_ACTOR_NAME, namespace="shardline")
    except ValueError:
        pass
    options: dict[str, Any] = {
        "name": MARKETDATA_ACTOR_NAME,
        "namespace": "shardline",
        "get_if_exists": True,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_concurrency": 100,
        "max_restarts": -1,
    }
    if config.mode in (Mode.LIVE, Mode.PAPER):
        # Broker traffic leaves from the node with the registered static IP.
        options["resources"] = {config.execution.pin_resource: 0.001}
    return ray.remote(MarketDataActor).options(**options).remote(config)
