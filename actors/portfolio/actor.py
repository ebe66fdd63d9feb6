"""The paper portfolio as the named actor "portfolio": the paper venue and the manual-trading API.

A thin async shell around `PaperPortfolio`. Every state change is journaled (stream `portfolio`,
files or Redis Streams) before it takes effect, and a restarted actor replays the journal into a
fresh portfolio, so Ray can restart it at will (`max_restarts=-1` where the topology starts it).

- Orders from the execution actor arrive as `submit`/`modify`/`cancel`/`find` (the interface of
  `actors.execution.venue.ActorVenue`); their fills and status changes go back to the execution
  actor's `on_venue_events`, which owns those orders' lives.
- Orders the venue places itself (GTT triggers, bracket legs, square-offs, expiry settlements) are
  unknown to the execution actor: their updates and the positions they move go to the terminal's
  hub, and their fills to the execution actor's `on_venue_own_fills` for its risk positions.
- Quotes are pushed by the router (`on_quotes`, at the router's bounded rate), given directly
  (`on_market`), or pulled from the router's `latest_quotes` for the instruments that matter
  (`start_quote_pump`, at a bounded rate).
- The execution actor tells it which kill switches are engaged (`set_entry_halts`), at its start
  and on every change: GTT legs and bracket entries that would open a position wait for them.
- A one-second heartbeat moves the clock without quotes: the intraday square-off, session roll,
  derivative expiry and GTT expiry happen on time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import msgspec
import ray

from actors.execution.venue import VenueAck, VenueOrderState
from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, OrderUpdate, Product, Side
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec, OptionRight
from actors.portfolio.money import rupees_to_paise
from actors.portfolio.portfolio import MarketQuote, PaperPortfolio, PortfolioError
from actors.portfolio.records import OrderRole
from actors.portfolio.views import BracketView, GttView, PortfolioSummary, PositionView, TradeView
from cluster.config import Secrets, ShardlineConfig
from cluster.topology import EXECUTION, NAMESPACE, ROUTER

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
# How long a looked-up execution actor handle is trusted before it is looked up again.
_HANDLE_TTL_NS = 10 * 10**9

_KIND = {
    0: InstrumentKind.EQUITY,
    1: InstrumentKind.INDEX,
    2: InstrumentKind.FUTURE,
    3: InstrumentKind.OPTION,
}


def instrument_specs(catalog: Any) -> Callable[[str], InstrumentSpec | None]:
    """`EXCH:token -> InstrumentSpec` from the catalog, built on first use and kept."""

    @functools.cache
    def lookup(key: str) -> InstrumentSpec | None:
        inst = catalog.get(key)
        if inst is None:
            return None
        spot = catalog.spot(inst.name) if inst.expiry is not None else None
        try:
            return InstrumentSpec(
                key=inst.key,
                symbol=inst.symbol,
                kind=_KIND[int(inst.kind)],
                lot_size=max(1, inst.lot_size),
                tick_size=max(1, inst.tick_size),
                expiry=inst.expiry,
                strike=inst.strike or 0,
                right=OptionRight(inst.option_type) if inst.option_type else None,
                underlying=spot.key if spot is not None else None,
            )
        except ValueError as err:  # an exchange the paper venue does not trade
            log.info("portfolio: %s is not tradable on paper: %s", key, err)
            return None

    return lookup


class ShiftedClock:
    """Wall time moved so that it read `start_ns` when made: a session run at another hour.

    Picklable, so an actor and its restarts keep one timeline (simulations, tests).
    """

    def __init__(self, start_ns: int) -> None:
        self.offset_ns = start_ns - time.time_ns()

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns


def whole_paise(value: Any) -> Any:
    """A view as builtins with exact fractions of a paisa rounded to whole paise (for JSON and msgpack)."""
    if isinstance(value, Fraction):
        return round(value)
    if isinstance(value, dict):
        return {k: whole_paise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_paise(v) for v in value]
    return value


def _builtins(value: Any) -> Any:
    return whole_paise(msgspec.to_builtins(value, builtin_types=(Fraction,)))


class PaperPortfolioActor:
    """Ray actor body, named "portfolio".

    Parameters
    ----------
    config
        The whole configuration (the portfolio, risk and sim sections; data_dir for the journal).
    journal_stream
        The journal stream; Redis Streams when REDIS_URL is set, else a file under data_dir.
    execution
        The execution actor's name, which receives the fills and status changes of its orders.
    instruments
        The instruments to trade, their position in the list being their iid; the catalog when None.
    clock
        Nanosecond wall clock (picklable); `time.time_ns` when None.
    publish
        Send the venue's own orders and the positions they move to the terminal's hub.
    """

    def __init__(
        self,
        config: ShardlineConfig,
        journal_stream: str = "portfolio",
        execution: str = EXECUTION,
        *,
        instruments: Sequence[InstrumentSpec] | None = None,
        clock: Callable[[], int] | None = None,
        publish: bool = True,
    ) -> None:
        from actors.journal.journal import open_journal

        self._clock = clock or time.time_ns
        if instruments is None:
            from catalog.sources import load_default_catalog

            catalog = load_default_catalog(config)
            self._keys_by_iid = catalog.keys()
            lookup = instrument_specs(catalog)
        else:
            self._keys_by_iid = [spec.key for spec in instruments]
            lookup = {spec.key: spec for spec in instruments}.get
        self._iid_by_key = {key: iid for iid, key in enumerate(self._keys_by_iid)}
        self._redis_url = Secrets().redis_url
        self._journal = open_journal(journal_stream, config.data_path, self._redis_url)
        self._portfolio = PaperPortfolio(
            config.portfolio,
            lookup,
            journal=functools.partial(self._journal.append, sync=False),
            journal_sync=self._journal.sync,
            allow_short_delivery=config.risk.allow_short_delivery,
            partial_fills=config.sim.partial_fills,
            max_order_qty=config.risk.max_order_qty,
            max_order_value=rupees_to_paise(config.risk.max_order_value_rupees),
        )
        replayed = self._portfolio.restore(entry.record for entry in self._journal.replay())
        self._execution_name = execution
        self._execution: Any = None
        self._execution_seen_ns = 0
        self._publish = publish
        self._publisher: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._halts_as_of_ns = 0
        self.counters = {"quotes": 0, "delivered": 0, "undelivered": 0, "published": 0, "pump_errors": 0}
        log.info(
            "portfolio: replayed %d journal records from %s, %d instruments, pid %d",
            replayed,
            journal_stream,
            len(self._keys_by_iid),
            os.getpid(),
        )

    # -- the paper venue (what `actors.execution.venue.ActorVenue` calls) ----------------------

    async def submit(self, order: OrderRequest) -> VenueAck:
        self._start()
        try:
            update = self._portfolio.submit(order, self._clock())
        except PortfolioError as err:
            return VenueAck(accepted=False, reason=str(err))
        self._deliver()
        return _ack(update)

    async def modify(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        self._start()
        try:
            update = self._portfolio.modify(
                order.client_order_id,
                self._clock(),
                quantity=order.quantity,
                price=order.price,
                trigger_price=order.trigger_price,
            )
        except PortfolioError as err:
            return VenueAck(accepted=False, venue_order_id=venue_order_id, reason=str(err))
        self._deliver()
        return _ack(update)

    async def cancel(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        self._start()
        try:
            update = self._portfolio.cancel(order.client_order_id, self._clock())
        except PortfolioError as err:
            return VenueAck(accepted=False, venue_order_id=venue_order_id, reason=str(err))
        self._deliver()
        return _ack(update)

    async def find(self, order: OrderRequest, venue_order_id: str | None = None) -> VenueOrderState | None:
        """What the venue knows of an order, with its fills: the execution actor's reconciliation."""
        try:
            update = self._portfolio.order(order.client_order_id)
        except PortfolioError:
            return None
        fills = [
            Fill(
                client_order_id=t.client_order_id,
                venue_order_id=t.venue_order_id,
                trade_id=t.trade_id,
                book=t.book,
                instrument=t.instrument,
                side=t.side,
                quantity=t.quantity,
                price=t.price,
                product=t.product,
                ts_ns=t.ts_ns,
                commission=t.charges,
            )
            for t in self._portfolio.trades(order.book)
            if t.client_order_id == order.client_order_id
        ]
        return VenueOrderState(
            client_order_id=update.client_order_id,
            venue_order_id=update.venue_order_id or "",
            status=update.status,
            fills=fills,
            reason=update.reason,
        )

    async def apply_fill(self, fill: Fill) -> TradeView | None:
        """Book a fill made elsewhere (live trading's broker fills) into positions and P&L."""
        self._start()
        trade = self._portfolio.apply_fill(fill)
        self._deliver()
        return trade

    async def set_entry_halts(self, halts: dict[str | None, str], as_of_ns: int) -> bool:
        """Take the execution actor's engaged kill switches (reasons by book; None: every book).

        Returns False, changing nothing, if a state newer than `as_of_ns` was taken already: the
        calls are sent without waiting, and Ray does not promise an async actor runs them in order.
        """
        self._start()
        if as_of_ns < self._halts_as_of_ns:
            return False
        self._halts_as_of_ns = as_of_ns
        self._portfolio.set_entry_halts(halts, self._clock())
        self._deliver()
        return True

    async def entry_halts(self) -> dict[str | None, str]:
        """The kill switches this venue holds its own entries to, by book (None: every book)."""
        return self._portfolio.entry_halts()

    # -- quotes --------------------------------------------------------------------------------

    async def on_quotes(self, quotes: Any) -> int:
        """The router's quote board rows (`QUOTE_DTYPE`): match, move stops, fire GTT rules."""
        self._start()
        keys = self._keys_by_iid
        now = self._clock()
        count = 0
        for row in quotes.tolist():
            iid, ltp, bid, ask = int(row[0]), int(row[1]), int(row[2]), int(row[3])
            if ltp <= 0 or not 0 <= iid < len(keys):
                continue
            # One clock for everything: an exchange timestamp from a replay must not move sessions.
            self._portfolio.on_quote(MarketQuote(instrument=keys[iid], ltp=ltp, bid=bid, ask=ask, ts_ns=now))
            count += 1
        self.counters["quotes"] += count
        self._deliver()
        return count

    async def on_market(self, quotes: list[MarketQuote]) -> int:
        """Quotes given directly (the simulator, tests); stamped with this actor's clock."""
        self._start()
        now = self._clock()
        for quote in quotes:
            self._portfolio.on_quote(msgspec.structs.replace(quote, ts_ns=now))
        self.counters["quotes"] += len(quotes)
        self._deliver()
        return len(quotes)

    async def start_quote_pump(self, router: str = ROUTER, hz: float = 10.0) -> None:
        """Pull the router's latest quotes for the instruments that matter, `hz` times a second."""
        if not 0 < hz <= 100:
            raise PortfolioError(f"quote pump rate must be in (0, 100] per second, got {hz}")
        self._start()
        if self._pump is not None:
            self._pump.cancel()
        self._pump = asyncio.get_running_loop().create_task(self._pull_quotes(router, 1.0 / hz))

    async def _pull_quotes(self, router: str, interval_s: float) -> None:
        handle = None
        while True:
            await asyncio.sleep(interval_s)
            iids = sorted(
                self._iid_by_key[k] for k in self._portfolio.watched_instruments() if k in self._iid_by_key
            )
            if not iids:
                continue
            try:
                handle = handle or ray.get_actor(router, namespace=NAMESPACE)
                quotes = await handle.latest_quotes.remote(iids)
            except Exception as err:  # the router restarting: try again next round
                self.counters["pump_errors"] += 1
                log.debug("portfolio: quote pump: %s", err)
                handle = None
                continue
            await self.on_quotes(quotes)

    # -- the manual-trading API (the terminal's service calls these) ---------------------------

    async def positions(self, book: str | None = None) -> list[PositionView]:
        return self._portfolio.positions(book)

    async def own_fills(self) -> list[Fill]:
        """Fills of the orders this actor placed itself, for an execution actor that starts and
        may have missed some while it was down (it books each trade id once)."""
        return self._portfolio.own_fills()

    async def trades(self, book: str | None = None) -> list[TradeView]:
        return self._portfolio.trades(book)

    async def orders(self, book: str | None = None) -> list[OrderUpdate]:
        return self._portfolio.orders(book)

    async def order(self, client_order_id: str) -> OrderUpdate:
        return self._portfolio.order(client_order_id)

    async def quote(self, instrument: str) -> MarketQuote | None:
        return self._portfolio.quote(instrument)

    async def summary(self) -> PortfolioSummary:
        return self._portfolio.summary()

    async def square_off(self, book: str, instrument: str | None = None) -> list[OrderUpdate]:
        self._start()
        exits = self._portfolio.square_off(book, self._clock(), instrument)
        self._deliver()
        return exits

    async def flatten(self, book: str | None = None) -> list[OrderUpdate]:
        """The kill switch: close every position of one book, or of all books, at market."""
        self._start()
        exits = self._portfolio.flatten(book, self._clock())
        self._deliver()
        return exits

    async def gtt_create(
        self,
        book: str,
        instrument: str,
        side: Side | str,
        quantity: int,
        product: Product | str,
        legs: list[tuple[int, int]],
        expires_ts_ns: int | None = None,
    ) -> GttView:
        self._start()
        rule = self._portfolio.gtt_create(
            book=book,
            instrument=instrument,
            side=Side(side),
            quantity=quantity,
            product=Product(product),
            legs=[(int(t), int(p)) for t, p in legs],
            ts_ns=self._clock(),
            expires_ts_ns=expires_ts_ns,
        )
        self._deliver()
        return rule

    async def gtt_modify(
        self,
        gtt_id: str,
        quantity: int | None = None,
        legs: list[tuple[int, int]] | None = None,
        expires_ts_ns: int | None = None,
    ) -> GttView:
        self._start()
        return self._portfolio.gtt_modify(
            gtt_id,
            self._clock(),
            quantity=quantity,
            legs=[(int(t), int(p)) for t, p in legs] if legs is not None else None,
            expires_ts_ns=expires_ts_ns,
        )

    async def gtt_cancel(self, gtt_id: str) -> GttView:
        self._start()
        return self._portfolio.gtt_cancel(gtt_id, self._clock())

    async def gtt_list(self, book: str | None = None) -> list[GttView]:
        return self._portfolio.gtt_list(book)

    async def bracket_place(
        self,
        *,
        book: str,
        instrument: str,
        side: Side | str,
        quantity: int,
        product: Product | str,
        stop_loss: int,
        target: int,
        entry_type: OrderType | str = OrderType.LIMIT,
        entry_price: int = 0,
        trailing_stop: int = 0,
    ) -> BracketView:
        self._start()
        bracket = self._portfolio.bracket_place(
            book=book,
            instrument=instrument,
            side=Side(side),
            quantity=quantity,
            product=Product(product),
            stop_loss=stop_loss,
            target=target,
            ts_ns=self._clock(),
            entry_type=OrderType(entry_type),
            entry_price=entry_price,
            trailing_stop=trailing_stop,
        )
        self._deliver()
        return bracket

    async def bracket_modify(
        self,
        bracket_id: str,
        stop_loss: int | None = None,
        target: int | None = None,
        trailing_stop: int | None = None,
    ) -> BracketView:
        self._start()
        bracket = self._portfolio.bracket_modify(
            bracket_id, self._clock(), stop_loss=stop_loss, target=target, trailing_stop=trailing_stop
        )
        self._deliver()
        return bracket

    async def bracket_cancel(self, bracket_id: str) -> BracketView:
        self._start()
        bracket = self._portfolio.bracket_cancel(bracket_id, self._clock())
        self._deliver()
        return bracket

    async def bracket_square_off(self, bracket_id: str) -> BracketView:
        self._start()
        bracket = self._portfolio.bracket_square_off(bracket_id, self._clock())
        self._deliver()
        return bracket

    async def bracket_list(self, book: str | None = None) -> list[BracketView]:
        return self._portfolio.bracket_list(book)

    async def stats(self) -> dict[str, Any]:
        self._start()
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id()[:12],
            "orders": len(self._portfolio.orders()),
            "working_orders": len(self._portfolio.orders(active_only=True)),
            "trades": len(self._portfolio.trades()),
            "watched_instruments": len(self._portfolio.watched_instruments()),
            **self.counters,
            "journal": msgspec.to_builtins(self._journal.stats()),
            "summary": _builtins(self._portfolio.summary()),
        }

    # -- internals -----------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the heartbeat on the first call (an actor's event loop exists only once it runs)."""
        if not self._tasks:
            task = asyncio.get_running_loop().create_task(self._heartbeat())
            self._tasks.add(task)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                self._portfolio.advance_clock(self._clock())
                self._deliver()
            except Exception:  # a failing step must not stop the clock for good
                log.exception("portfolio: heartbeat step failed")

    def _deliver(self) -> None:
        """Updates since the last call: the execution actor's orders to it, the venue's own to the hub."""
        events = self._portfolio.drain_events()
        if not events:
            return
        client: list[OrderUpdate] = []
        own: list[OrderUpdate] = []
        for event in events:
            ours = self._portfolio.order_role(event.client_order_id) is OrderRole.CLIENT
            (client if ours else own).append(event)
        # Its own orders' updates, in one call: a Ray call costs more than an event. A restarting
        # execution actor asks `find` for what it missed.
        self._to_execution("on_venue_events", client)
        # Not the execution actor's orders, but their fills move the positions its risk checks
        # judge; it books each trade id once.
        self._to_execution("on_venue_own_fills", [e.fill for e in own if e.fill is not None])
        if own and self._publish:
            self._publish_updates(own)

    def _to_execution(self, method: str, items: list[Any]) -> None:
        if not items:
            return
        execution = self._execution_handle()
        if execution is None:
            self.counters["undelivered"] += len(items)
            return
        getattr(execution, method).remote(items)
        self.counters["delivered"] += len(items)

    def _execution_handle(self) -> Any:
        now = time.monotonic_ns()
        if self._execution is None or now - self._execution_seen_ns > _HANDLE_TTL_NS:
            try:
                self._execution = ray.get_actor(self._execution_name, namespace=NAMESPACE)
                self._execution_seen_ns = now
            except ValueError:
                self._execution = None
        return self._execution

    def _publish_updates(self, updates: list[OrderUpdate]) -> None:
        """The venue's own orders, and the positions their fills moved, to the terminal's hub."""
        try:
            if self._publisher is None:
                from serve.hub import connect_publisher

                self._publisher = connect_publisher(self._redis_url)
            messages: list[tuple[str, str, dict[str, Any]]] = []
            moved: set[tuple[str, str]] = set()
            for update in updates:
                data = _builtins(update)
                request = self._portfolio.order_request(update.client_order_id)
                if request is not None:
                    data |= {
                        k: v
                        for k, v in msgspec.to_builtins(request).items()
                        if k not in ("client_order_id", "book", "instrument")
                    }
                messages.append(("orders", update.client_order_id, data))
                if update.fill is not None:
                    moved.add((update.book, update.instrument))
            for book, instrument in moved:
                for position in self._portfolio.positions(book):
                    if position.instrument == instrument:
                        key = f"{position.book}|{position.instrument}|{position.product.value}"
                        messages.append(("positions", key, _builtins(position)))
            self._publisher.publish(messages)
            self.counters["published"] += len(messages)
        except Exception as err:  # the terminal is optional: trading goes on without it
            log.warning("portfolio: could not publish to the hub: %s", err)
            self._publisher = None


def _approximate(value: Any) -> Any:
    if isinstance(value, Fraction):
        return float(value)
    raise NotImplementedError(f"cannot report {type(value).__name__} in stats")


def _ack(update: OrderUpdate) -> VenueAck:
    if update.status is OrderStatus.REJECTED:
        return VenueAck(accepted=False, venue_order_id=update.venue_order_id, reason=update.reason)
    return VenueAck(accepted=True, venue_order_id=update.venue_order_id, status=update.status)
