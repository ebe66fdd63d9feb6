"""The paper portfolio as the named actor "portfolio": the paper venue and the manual-trading API.

A thin async shell around `PaperPortfolio`. Every state change is journaled (stream `portfolio`,
files or Redis Streams) before it takes effect, and a restarted actor replays the journal into a
fresh portfolio. Quotes come from the router's quote board (`on_quotes`); fills and status
changes go to the execution actor's `on_venue_event`, which owns the order's life.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import msgspec
import ray

from actors.execution.venue import VenueAck, VenueOrderState
from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, OrderUpdate, Product, Side
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec, OptionRight
from actors.portfolio.portfolio import MarketQuote, PaperPortfolio, PortfolioError
from cluster.config import Secrets, ShardlineConfig
from cluster.topology import EXECUTION, NAMESPACE

log = logging.getLogger(__name__)

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


class PaperPortfolioActor:
    """Ray actor body (named "portfolio", restarted forever, state rebuilt from its journal).

    Parameters
    ----------
    config
        The whole configuration (portfolio and risk sections, data_dir).
    journal_stream
        The journal stream; Redis Streams when REDIS_URL is set, else a file under data_dir.
    execution
        The execution actor's name, which receives this venue's fills and status changes.
    """

    def __init__(
        self, config: ShardlineConfig, journal_stream: str = "portfolio", execution: str = EXECUTION
    ) -> None:
        from actors.journal.journal import open_journal
        from catalog.sources import load_default_catalog

        catalog = load_default_catalog(config)
        self._keys_by_iid = [i.key for i in catalog.instruments]
        self._journal = open_journal(journal_stream, config.data_path, Secrets().redis_url)
        self._portfolio = PaperPortfolio(
            config.portfolio,
            instrument_specs(catalog),
            journal=lambda record: self._journal.append(msgspec.to_builtins(record)),
            allow_short_delivery=config.risk.allow_short_delivery,
            partial_fills=config.sim.partial_fills,
        )
        replayed = self._portfolio.restore(entry.record for entry in self._journal.replay())
        self._execution = execution
        self._undelivered = 0
        self._quotes_seen = 0
        log.info("portfolio: replayed %d journal records, pid %d", replayed, os.getpid())

    # -- the paper venue (what `actors.execution.venue.ActorVenue` calls) ----------------------

    async def submit(self, order: OrderRequest) -> VenueAck:
        try:
            update = self._portfolio.submit(order, time.time_ns())
        except PortfolioError as err:
            return VenueAck(accepted=False, reason=str(err))
        self._deliver()
        return _ack(update)

    async def modify(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        try:
            update = self._portfolio.modify(
                order.client_order_id,
                time.time_ns(),
                quantity=order.quantity,
                price=order.price,
                trigger_price=order.trigger_price,
            )
        except PortfolioError as err:
            return VenueAck(accepted=False, venue_order_id=venue_order_id, reason=str(err))
        self._deliver()
        return _ack(update)

    async def cancel(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        try:
            update = self._portfolio.cancel(order.client_order_id, time.time_ns())
        except PortfolioError as err:
            return VenueAck(accepted=False, venue_order_id=venue_order_id, reason=str(err))
        self._deliver()
        return _ack(update)

    async def find(self, order: OrderRequest, venue_order_id: str | None = None) -> VenueOrderState | None:
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

    async def on_quotes(self, quotes: Any) -> int:
        """The router's quote board: match resting orders, move stops, fire GTT rules."""
        keys = self._keys_by_iid
        now = time.time_ns()
        for row in quotes.tolist():
            iid, ltp, bid, ask = int(row[0]), int(row[1]), int(row[2]), int(row[3])
            if ltp <= 0 or not 0 <= iid < len(keys):
                continue
            ts = int(row[5]) or now
            self._portfolio.on_quote(MarketQuote(instrument=keys[iid], ltp=ltp, bid=bid, ask=ask, ts_ns=ts))
            self._quotes_seen += 1
        self._deliver()
        return len(quotes)

    def _deliver(self) -> None:
        """Order updates and fills since the last call go to the execution actor, in order."""
        events = self._portfolio.drain_events()
        if not events:
            return
        try:
            execution = ray.get_actor(self._execution, namespace=NAMESPACE)
        except ValueError:  # execution is restarting: its reconcile asks `find` for what it missed
            self._undelivered += len(events)
            return
        for update in events:
            execution.on_venue_event.remote(update)

    # -- the manual-trading API (the terminal's service calls these) ---------------------------

    async def positions(self, book: str | None = None) -> list[Any]:
        return self._portfolio.positions(book)

    async def trades(self, book: str | None = None) -> list[Any]:
        return self._portfolio.trades(book)

    async def orders(self, book: str | None = None) -> list[OrderUpdate]:
        return self._portfolio.orders(book)

    async def summary(self) -> Any:
        return self._portfolio.summary()

    async def square_off(self, book: str, instrument: str | None = None) -> list[OrderUpdate]:
        exits = self._portfolio.square_off(book, time.time_ns(), instrument)
        self._deliver()
        return exits

    async def flatten(self, book: str | None = None) -> list[OrderUpdate]:
        exits = self._portfolio.flatten(book, time.time_ns())
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
    ) -> Any:
        rule = self._portfolio.gtt_create(
            book=book,
            instrument=instrument,
            side=Side(side),
            quantity=quantity,
            product=Product(product),
            legs=[(int(t), int(p)) for t, p in legs],
            ts_ns=time.time_ns(),
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
    ) -> Any:
        return self._portfolio.gtt_modify(
            gtt_id, time.time_ns(), quantity=quantity, legs=legs, expires_ts_ns=expires_ts_ns
        )

    async def gtt_cancel(self, gtt_id: str) -> Any:
        return self._portfolio.gtt_cancel(gtt_id, time.time_ns())

    async def gtt_list(self, book: str | None = None) -> list[Any]:
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
    ) -> Any:
        bracket = self._portfolio.bracket_place(
            book=book,
            instrument=instrument,
            side=Side(side),
            quantity=quantity,
            product=Product(product),
            stop_loss=stop_loss,
            target=target,
            ts_ns=time.time_ns(),
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
    ) -> Any:
        bracket = self._portfolio.bracket_modify(
            bracket_id, time.time_ns(), stop_loss=stop_loss, target=target, trailing_stop=trailing_stop
        )
        self._deliver()
        return bracket

    async def bracket_cancel(self, bracket_id: str) -> Any:
        bracket = self._portfolio.bracket_cancel(bracket_id, time.time_ns())
        self._deliver()
        return bracket

    async def bracket_list(self, book: str | None = None) -> list[Any]:
        return self._portfolio.bracket_list(book)

    async def stats(self) -> dict[str, Any]:
        summary = self._portfolio.summary()
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id()[:12],
            "orders": len(self._portfolio.orders()),
            "trades": len(self._portfolio.trades()),
            "quotes_seen": self._quotes_seen,
            "undelivered": self._undelivered,
            "journal": msgspec.to_builtins(self._journal.stats()),
            "summary": msgspec.to_builtins(summary),
        }


def _ack(update: OrderUpdate) -> VenueAck:
    if update.status is OrderStatus.REJECTED:
        return VenueAck(accepted=False, venue_order_id=update.venue_order_id, reason=update.reason)
    return VenueAck(accepted=True, venue_order_id=update.venue_order_id, status=update.status)
