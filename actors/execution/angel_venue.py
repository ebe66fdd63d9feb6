"""`AngelVenue`: orders through the Angel One REST client, reports from its order-update socket.

Used in `live` (Angel One) and `sim-live` (the simulator, same wire protocols). Calls go through
the REST client, which applies Angel's rate limits with cancels and exits first (an order the
engine marks `is_exit` goes ahead of entries). Status changes come from the order-update socket;
fills come from the trade book, fetched when an update shows more filled than reported so far,
so each fill carries the broker's own trade id and price. After the socket reconnects (Angel does
not replay what it missed), the books are read again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from actors.angel.common import Variety
from actors.angel.errors import AngelError
from actors.angel.factories import AngelConnection
from actors.angel.order_updates import OrderUpdateClient
from actors.angel.schemas import BrokerOrder, BrokerTrade, ModifyOrderParams, split_key, to_rupees
from actors.execution.venue import EventSink, VenueAck, VenueEvent, VenueOrderEvent, VenueOrderState
from actors.orders import ANGEL_ORDER_TYPE, Fill, OrderRequest, OrderStatus, OrderType
from cluster.config import Mode, Secrets, ShardlineConfig

log = logging.getLogger(__name__)

SymbolLookup = Callable[[str], str | None]  # "EXCH:token" -> Angel trading symbol
_REPORTED_STATUSES = (
    OrderStatus.OPEN,
    OrderStatus.TRIGGER_PENDING,
    OrderStatus.CANCELLED,
    OrderStatus.REJECTED,
)
_TRADE_SYNC_ATTEMPTS = 6
_ORPHANS_KEPT = 1_000


class AngelVenue:
    """The broker as a venue.

    Parameters
    ----------
    connection
        One Angel login (REST client, session, endpoints).
    symbol_of
        The trading symbol of an "EXCH:token" key (placeOrder and modifyOrder need it).
    clock
        Nanosecond wall clock for the fills' timestamps.
    book_ttl_s
        How long an order or trade book read is reused (the books allow one call a second).
    """

    name = "angel"

    def __init__(
        self,
        connection: AngelConnection,
        symbol_of: SymbolLookup,
        *,
        clock: Callable[[], int] = time.time_ns,
        book_ttl_s: float = 1.0,
    ) -> None:
        self._conn = connection
        self._symbol_of = symbol_of
        self._clock = clock
        self._book_ttl_s = book_ttl_s
        self._sink: EventSink | None = None
        self._orders: dict[str, OrderRequest] = {}  # venue order id -> our order (current terms)
        self._broker_filled: dict[str, int] = {}  # venue order id -> filled, as the broker last said
        self._reported: dict[str, int] = {}  # venue order id -> filled, as reported by fills so far
        self._trade_ids: set[str] = set()
        self._orphans: dict[str, list[BrokerOrder]] = {}  # updates that beat placeOrder's answer
        self._updates: OrderUpdateClient | None = None
        self._trade_sync: asyncio.Task[None] | None = None
        self._sync_again = False
        self._order_book: tuple[float, list[BrokerOrder]] | None = None
        self._trade_book: tuple[float, list[BrokerTrade]] | None = None
        self.counts: dict[str, int] = dict.fromkeys(("placed", "refused", "updates", "fills", "resyncs"), 0)

    @classmethod
    def connect(
        cls,
        config: ShardlineConfig,
        endpoints: Any = None,
        credentials: Any = None,
        symbol_of: SymbolLookup | None = None,
    ) -> AngelVenue:
        """Wire the venue for `config` (the simulator's login in sim-live, else the environment's)."""
        from actors.angel.auth import AngelCredentials
        from actors.angel.factories import AngelEndpoints, connect

        if credentials is None:
            credentials = (
                AngelCredentials.for_simulator(config.sim)
                if config.mode is Mode.SIM_LIVE
                else AngelCredentials.from_secrets(Secrets())
            )
        if symbol_of is None:
            from catalog.sources import load_default_catalog

            catalog = load_default_catalog(config)

            def symbol_of(key: str) -> str | None:
                instrument = catalog.get(key)
                return None if instrument is None else instrument.symbol

        connection = connect(credentials, endpoints or AngelEndpoints(), config.data_path)
        return cls(connection, symbol_of)

    @property
    def rest(self) -> Any:
        """The REST client (its `limiter` holds Angel's windows, for the stats)."""
        return self._conn.rest

    def attach(self, sink: EventSink) -> None:
        self._sink = sink

    async def start(self) -> None:
        """Open the order-update socket (also done by the first order)."""
        if self._updates is not None:
            return
        conn = self._conn
        self._updates = OrderUpdateClient(
            conn.endpoints.order_url,
            conn.order_update_headers,
            self._on_update,
            on_auth_refused=conn.renew_session,
            on_reconnected=self._resync,
        )
        await self._updates.start()

    async def close(self) -> None:
        if self._updates is not None:
            await self._updates.stop()
        if self._trade_sync is not None:
            self._trade_sync.cancel()
        await self._conn.close()

    # -- orders ------------------------------------------------------------------------------

    async def submit(self, order: OrderRequest) -> VenueAck:
        await self.start()
        symbol = self._symbol_of(order.instrument)
        if symbol is None:
            return VenueAck(accepted=False, reason=f"no trading symbol for {order.instrument} in the catalog")
        try:
            answer = await self._conn.rest.place_order(order, symbol)
        except (AngelError, ValueError) as err:  # refused: it was not placed
            self.counts["refused"] += 1
            return VenueAck(accepted=False, reason=str(err))
        self.counts["placed"] += 1
        self._track(answer.orderid, order)
        stop = order.order_type in (OrderType.SL, OrderType.SL_M)
        return VenueAck(
            accepted=True,
            venue_order_id=answer.orderid,
            status=OrderStatus.TRIGGER_PENDING if stop else OrderStatus.OPEN,
        )

    async def modify(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        symbol = self._symbol_of(order.instrument)
        if symbol is None:
            return VenueAck(accepted=False, reason=f"no trading symbol for {order.instrument} in the catalog")
        exchange, token = split_key(order.instrument)
        params = ModifyOrderParams(
            variety=_variety(order),
            orderid=venue_order_id,
            ordertype=ANGEL_ORDER_TYPE[order.order_type],
            producttype=order.product.value,
            duration=order.validity.value,
            price=to_rupees(order.price, exchange),
            quantity=str(order.quantity),
            tradingsymbol=symbol,
            symboltoken=token,
            exchange=exchange,
            triggerprice=to_rupees(order.trigger_price, exchange),
        )
        try:
            await self._conn.rest.modify_order(params, urgent=order.is_exit)
        except AngelError as err:
            return VenueAck(accepted=False, reason=str(err))
        self._orders[venue_order_id] = order
        return VenueAck(accepted=True, venue_order_id=venue_order_id)

    async def cancel(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        try:
            await self._conn.rest.cancel_order(venue_order_id, _variety(order))
        except AngelError as err:
            return VenueAck(accepted=False, reason=str(err))
        # The confirmation (AB02) comes on the order-update socket.
        return VenueAck(accepted=True, venue_order_id=venue_order_id)

    async def find(self, order: OrderRequest, venue_order_id: str | None = None) -> VenueOrderState | None:
        """The broker's view of `order`. Without a venue order id it cannot be identified (Angel's
        order tag is the strategy's, not our id), so None."""
        if venue_order_id is None:
            return None
        await self.start()
        self._track(venue_order_id, order)
        rows = [o for o in await self._read_orders() if o.venue_order_id == venue_order_id]
        if not rows:
            return None
        row = rows[-1]
        fills = [
            self._fill(t, order) for t in await self._read_trades() if t.venue_order_id == venue_order_id
        ]
        for fill in fills:
            self._trade_ids.add(fill.trade_id)
        self._reported[venue_order_id] = sum(f.quantity for f in fills)
        self._broker_filled[venue_order_id] = row.filled_quantity
        return VenueOrderState(
            client_order_id=order.client_order_id,
            venue_order_id=venue_order_id,
            status=row.status,
            fills=fills,
            reason=row.reason,
        )

    # -- reports -----------------------------------------------------------------------------

    def _track(self, venue_order_id: str, order: OrderRequest) -> None:
        self._orders[venue_order_id] = order
        for early in self._orphans.pop(venue_order_id, []):
            self._on_update(early)

    def _on_update(self, update: BrokerOrder) -> None:
        self.counts["updates"] += 1
        order = self._orders.get(update.venue_order_id)
        if order is None:
            if len(self._orphans) < _ORPHANS_KEPT:
                self._orphans.setdefault(update.venue_order_id, []).append(update)
            return
        vid = update.venue_order_id
        if update.filled_quantity > self._broker_filled.get(vid, 0):
            self._broker_filled[vid] = update.filled_quantity
        if self._broker_filled.get(vid, 0) > self._reported.get(vid, 0):
            self._sync_trades()
        if update.status in _REPORTED_STATUSES:
            self._emit(
                VenueOrderEvent(
                    client_order_id=order.client_order_id,
                    venue_order_id=vid,
                    status=update.status,
                    reason=update.reason if update.status is OrderStatus.REJECTED else "",
                    ts_ns=self._clock(),
                )
            )

    def _sync_trades(self) -> None:
        """Read the trade book for fills not yet reported (one read at a time, again if asked)."""
        if self._trade_sync is not None and not self._trade_sync.done():
            self._sync_again = True
            return
        self._trade_sync = asyncio.get_running_loop().create_task(self._read_new_fills())

    async def _read_new_fills(self) -> None:
        for attempt in range(_TRADE_SYNC_ATTEMPTS):
            self._sync_again = False
            try:
                trades = await self._read_trades(fresh=True)
            except AngelError as err:
                log.warning("angel venue: trade book read failed: %s", err)
                trades = []
            for trade in trades:
                order = self._orders.get(trade.venue_order_id)
                if order is None or trade.trade_id in self._trade_ids:
                    continue
                self._trade_ids.add(trade.trade_id)
                vid = trade.venue_order_id
                self._reported[vid] = self._reported.get(vid, 0) + trade.quantity
                self.counts["fills"] += 1
                self._emit(self._fill(trade, order))
            behind = any(self._broker_filled[v] > self._reported.get(v, 0) for v in self._broker_filled)
            if not behind and not self._sync_again:
                return
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))  # the trade book lags the order update
        log.warning("angel venue: the trade book still lacks fills the order updates reported")

    async def _resync(self) -> None:
        """The socket was down: read the books again for changes it missed."""
        self.counts["resyncs"] += 1
        try:
            rows = await self._read_orders(fresh=True)
        except AngelError as err:
            log.warning("angel venue: order book read after reconnect failed: %s", err)
            return
        for row in rows:
            if row.venue_order_id in self._orders:
                self._on_update(row)
        self._sync_trades()

    def _fill(self, trade: BrokerTrade, order: OrderRequest) -> Fill:
        return Fill(
            client_order_id=order.client_order_id,
            venue_order_id=trade.venue_order_id,
            trade_id=trade.trade_id,
            book=order.book,
            instrument=order.instrument,
            side=trade.side,
            quantity=trade.quantity,
            price=trade.price,
            product=order.product,
            ts_ns=self._clock(),
        )

    def _emit(self, event: VenueEvent) -> None:
        if self._sink is not None:
            self._sink(event)

    async def _read_orders(self, fresh: bool = False) -> list[BrokerOrder]:
        now = time.monotonic()
        if fresh or self._order_book is None or now - self._order_book[0] > self._book_ttl_s:
            self._order_book = (now, await self._conn.rest.order_book())
        return self._order_book[1]

    async def _read_trades(self, fresh: bool = False) -> list[BrokerTrade]:
        now = time.monotonic()
        if fresh or self._trade_book is None or now - self._trade_book[0] > self._book_ttl_s:
            self._trade_book = (now, await self._conn.rest.trade_book())
        return self._trade_book[1]


def _variety(order: OrderRequest) -> str:
    return Variety.STOPLOSS if order.order_type in (OrderType.SL, OrderType.SL_M) else Variety.NORMAL
