"""The simulator as a named Ray actor, so `shardline up` and chaos runs manage it like the rest."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from actors.angel.packets import EXCHANGE_TYPE
from actors.restart import start_on_self
from actors.sim.server import SimServer
from actors.sim.universe import SimInstrument
from cluster.config import ShardlineConfig


class SimulatorActor:
    """Async actor shell over `SimServer`; the server runs on the actor's own event loop."""

    def __init__(self, config: ShardlineConfig, keys: list[str]) -> None:
        self._server = SimServer(config.sim, simulated_instruments(config, keys))
        self._starting = asyncio.Lock()  # bound to the actor's loop at first use
        start_on_self("start")  # after a restart: listening again on its configured ports

    async def start(self) -> dict[str, str]:
        """Listen (idempotent: the actor calls it on itself, and the launcher does too)."""
        async with self._starting:
            if not self._server.rest_url:
                await self._server.start()
        return self.urls()

    def urls(self) -> dict[str, str]:
        s = self._server
        return {"rest_url": s.rest_url, "stream_url": s.stream_url, "order_url": s.order_url}

    def credentials(self) -> dict[str, str]:
        return self._server.credentials()

    def set_tick_rate(self, rate: int) -> None:
        self._server.set_tick_rate(rate)

    def drop_connections(self) -> int:
        return self._server.drop_connections()

    def last_seq(self, key: str) -> int:
        return self._server.last_seq(key)

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), **self._server.counters(), **self.urls()}

    async def stop(self) -> None:
        await self._server.stop()


def simulated_instruments(config: ShardlineConfig, keys: list[str]) -> list[SimInstrument]:
    """Every instrument the topology subscribes, then the catalog's first rows up to `sim.instruments`.

    Starting prices come from the catalog's own price model, so an option universe chosen around
    the underlying's price ("NIFTY options ±10 strikes") is at the money in the simulated market too.
    """
    from catalog.sources import load_default_catalog
    from catalog.synth import base_price_paise

    catalog = load_default_catalog(config)
    wanted = [catalog.resolve(key) for key in keys]
    seen = {i.key for i in wanted}
    extra = (i for i in catalog.instruments if i.key not in seen and i.exchange in EXCHANGE_TYPE)
    rows = wanted + list(itertools.islice(extra, max(0, config.sim.instruments - len(wanted))))
    return [
        SimInstrument(
            exchange=i.exchange,
            token=i.token,
            symbol=i.symbol,
            tick_size=max(1, i.tick_size),
            lot_size=max(1, i.lot_size),
            base_price=base_price_paise(i),
            instrument_type=i.instrument_type,
        )
        for i in rows
    ]
