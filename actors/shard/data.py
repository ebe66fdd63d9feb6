"""`ShardDataClient`: the Nautilus market-data client that the router feeds with tick batches.

There is no socket behind it: the router pushes batches into the shard, and the shard calls
`feed(ticks)` on the node's loop. Subscriptions are honoured: only instruments a strategy
subscribed (trade ticks, quote ticks) are converted and handed to the engine; every other row is
counted as skipped. Bars are aggregated by the engine from the trade ticks (INTERNAL bar types);
order-book depth is not available (the tick batch carries only the best bid and ask).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.core.data import Data
from nautilus_trader.data.messages import (
    RequestBars,
    RequestQuoteTicks,
    RequestTradeTicks,
    SubscribeBars,
    SubscribeOrderBook,
    SubscribeQuoteTicks,
    SubscribeTradeTicks,
    UnsubscribeQuoteTicks,
    UnsubscribeTradeTicks,
)
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.model.identifiers import ClientId

from actors.shard.conversion import ConvertedBatch, TickConverter

BROKER = "ANGEL"  # one client id for every exchange segment: Angel One is the broker for all


class TickHandlingError(Exception):
    """A strategy (or the engine) raised while handling one tick of a batch."""

    def __init__(self, item: Data, handled: int, cause: BaseException) -> None:
        super().__init__(f"error handling {item!r}: {cause!r}")
        self.item = item
        self.handled = handled  # items of the batch handled before this one
        self.cause = cause


@dataclass
class FeedResult:
    """One batch, fed: the conversion counts and when each item's handling finished."""

    batch: ConvertedBatch
    done_ns: np.ndarray  # wall-clock ns at which the engine (and its strategies) finished each item


class ShardDataClient(LiveMarketDataClient):
    """A multi-venue market-data client fed in-process by the shard.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The node's event loop.
    msgbus, cache, clock
        The node's kernel components.
    converter : TickConverter
        The tick converter for the shard's universe (it also holds the subscriptions).
    deliver : Callable[[Data], None], optional
        Hands one item to the data engine; defaults to the engine's message queue
        (`_handle_data`). The shard passes the engine's synchronous path instead, so that a
        batch is fully handled when `feed` returns.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        converter: TickConverter,
        deliver: Callable[[Data], None] | None = None,
    ) -> None:
        super().__init__(
            loop=loop,
            client_id=ClientId(BROKER),
            venue=None,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=InstrumentProvider(),
        )
        self._converter = converter
        self._deliver = deliver or self._handle_data

    @property
    def converter(self) -> TickConverter:
        return self._converter

    def feed(self, ticks: np.ndarray) -> FeedResult:
        """Convert one tick batch and hand each item to the engine, in feed order.

        Raises
        ------
        TickHandlingError
            If handling an item raised; items before it were handled.
        """
        batch = self._converter.convert(ticks)
        deliver = self._deliver
        now = time.time_ns
        done: list[int] = []
        append = done.append
        for item in batch.data:
            try:
                deliver(item)
            except Exception as err:
                raise TickHandlingError(item, len(done), err) from err
            append(now())
        return FeedResult(batch=batch, done_ns=np.asarray(done, dtype=np.int64))

    # -- connection: nothing to open, the router pushes ------------------------------------------

    async def _connect(self) -> None:
        self._log.info(f"ready for tick batches; {len(self._cache.instruments())} instruments loaded")

    async def _disconnect(self) -> None:
        return None

    # -- subscriptions ----------------------------------------------------------------------------

    async def _subscribe_trade_ticks(self, command: SubscribeTradeTicks) -> None:
        self._converter.subscribe_trades([command.instrument_id])

    async def _unsubscribe_trade_ticks(self, command: UnsubscribeTradeTicks) -> None:
        self._converter.subscribe_trades([command.instrument_id], on=False)

    async def _subscribe_quote_ticks(self, command: SubscribeQuoteTicks) -> None:
        self._converter.subscribe_quotes([command.instrument_id])

    async def _unsubscribe_quote_ticks(self, command: UnsubscribeQuoteTicks) -> None:
        self._converter.subscribe_quotes([command.instrument_id], on=False)

    async def _subscribe_bars(self, command: SubscribeBars) -> None:
        self._log.error(
            f"{command.bar_type}: external bars are not fed to shards; "
            "subscribe an INTERNAL bar type to have the engine aggregate trade ticks"
        )

    async def _subscribe_order_book_deltas(self, command: SubscribeOrderBook) -> None:
        self._log.error(f"{command.instrument_id}: order-book data is not fed to shards (best bid/ask only)")

    async def _subscribe_order_book_snapshots(self, command: SubscribeOrderBook) -> None:
        self._log.error(f"{command.instrument_id}: order-book data is not fed to shards (best bid/ask only)")

    async def _subscribe_instrument(self, command: object) -> None:
        return None  # every instrument of the universe is in the cache before start

    async def _subscribe_instruments(self, command: object) -> None:
        return None

    # -- history requests: a shard has only the live stream ---------------------------------------

    async def _request_trade_ticks(self, request: RequestTradeTicks) -> None:
        self._log.warning(f"historical trade ticks are not available in a shard ({request.instrument_id})")

    async def _request_quote_ticks(self, request: RequestQuoteTicks) -> None:
        self._log.warning(f"historical quote ticks are not available in a shard ({request.instrument_id})")

    async def _request_bars(self, request: RequestBars) -> None:
        self._log.warning(f"historical bars are not available in a shard ({request.bar_type})")
