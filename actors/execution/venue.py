"""The venue interface the execution engine sends orders through, and the venues that implement it.

A venue takes `submit`, `modify` and `cancel` and answers each with a `VenueAck`; fills and
status changes it reports later (or before the answer: reports cross on the wire) flow back as
`VenueEvent`s to the callback given to `attach`. After a restart the engine asks `find` what the
venue knows of an order it had sent.

Implementations:

- `LocalPaperVenue`: in-process, fills against quotes it is given (tests, benchmarks, and the
  stand-in paper venue until the portfolio actor takes that role).
- `ActorVenue`: a Ray actor with the same four methods (the paper portfolio actor, or a
  `PaperVenueActor`); the actor pushes its events to the execution actor's `on_venue_event`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, OrderUpdate, Side

log = logging.getLogger(__name__)


class VenueAck(msgspec.Struct, frozen=True, kw_only=True):
    """A venue's answer to submit, modify or cancel.

    `status` is the order's state as of the answer when the venue knows it (OPEN or
    TRIGGER_PENDING after a submit, CANCELLED after a cancel); None means "the outcome follows as
    an event".
    """

    accepted: bool
    venue_order_id: str | None = None
    status: OrderStatus | None = None
    reason: str = ""


class VenueOrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A status change the venue reports on its own: OPEN (a stop triggered), CANCELLED, REJECTED."""

    client_order_id: str
    venue_order_id: str | None = None
    status: OrderStatus
    reason: str = ""
    ts_ns: int = 0


class VenueOrderState(msgspec.Struct, frozen=True, kw_only=True):
    """What the venue knows of one order, for reconciliation after a restart."""

    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    fills: list[Fill] = msgspec.field(default_factory=list)
    reason: str = ""


VenueEvent = Fill | VenueOrderEvent
EventSink = Callable[[VenueEvent], None]


def event_from_update(update: OrderUpdate) -> VenueEvent | None:
    """A venue's report given as an `OrderUpdate`: its fill, or its status change (None if neither)."""
    if update.fill is not None:
        return update.fill
    if update.status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.PENDING):
        return None  # quantities come with fills
    return VenueOrderEvent(
        client_order_id=update.client_order_id,
        venue_order_id=update.venue_order_id,
        status=update.status,
        reason=update.reason,
        ts_ns=update.ts_ns,
    )


class Venue(Protocol):
    """Where the execution engine's orders go."""

    name: str

    async def submit(self, order: OrderRequest) -> VenueAck: ...

    async def modify(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        """`order` carries the new quantity and prices."""
        ...

    async def cancel(self, order: OrderRequest, venue_order_id: str) -> VenueAck: ...

    async def find(self, order: OrderRequest, venue_order_id: str | None = None) -> VenueOrderState | None:
        """What the venue knows of `order` (by `venue_order_id` when the engine has it), or None."""
        ...

    def attach(self, sink: EventSink) -> None:
        """Deliver fills and status changes to `sink` from now on."""
        ...


@dataclass
class _Resting:
    request: OrderRequest
    venue_order_id: str
    status: OrderStatus
    fills: list[Fill] = field(default_factory=list)
    reason: str = ""

    @property
    def filled(self) -> int:
        return sum(f.quantity for f in self.fills)


class LocalPaperVenue:
    """Fills orders in process against the latest quote given with `set_quote`.

    A MARKET order fills in full at the ask (buy) or bid (sell), or the last price when the quote
    has no side; a LIMIT order fills when marketable, else rests until a quote crosses it; a stop
    waits (TRIGGER_PENDING) until the last price reaches its trigger, then works as a market or
    limit order. Events go to the sink on the next turn of the event loop, after the answer.
    """

    name = "paper-local"

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._quotes: dict[str, tuple[int, int, int]] = {}  # instrument -> (bid, ask, ltp)
        self._orders: dict[str, _Resting] = {}
        self._ids = itertools.count(1)
        self._trades = itertools.count(1)
        self._sink: EventSink | None = None
        self.submissions = 0  # distinct orders received

    def attach(self, sink: EventSink) -> None:
        self._sink = sink

    def set_quote(self, instrument: str, ltp: int, bid: int = 0, ask: int = 0) -> None:
        """A new quote; resting orders it reaches trigger or fill."""
        self._quotes[instrument] = (bid, ask, ltp)
        for order in list(self._orders.values()):
            if order.request.instrument == instrument and order.status in _WORKING:
                self._work(order)

    async def submit(self, order: OrderRequest) -> VenueAck:
        if order.client_order_id in self._orders:
            known = self._orders[order.client_order_id]
            return VenueAck(accepted=True, venue_order_id=known.venue_order_id, status=known.status)
        if order.order_type is OrderType.MARKET and self._fill_price(order) is None:
            return VenueAck(accepted=False, reason=f"no quote for {order.instrument}")
        self.submissions += 1
        stop = order.order_type in (OrderType.SL, OrderType.SL_M)
        resting = _Resting(
            order, f"P{next(self._ids)}", OrderStatus.TRIGGER_PENDING if stop else OrderStatus.OPEN
        )
        self._orders[order.client_order_id] = resting
        status = resting.status
        self._work(resting)
        return VenueAck(accepted=True, venue_order_id=resting.venue_order_id, status=status)

    async def modify(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        resting = self._orders.get(order.client_order_id)
        if resting is None or resting.venue_order_id != venue_order_id:
            return VenueAck(accepted=False, reason=f"no order {venue_order_id}")
        if resting.status not in _WORKING:
            return VenueAck(accepted=False, reason=f"order {venue_order_id} is {resting.status}")
        if order.quantity <= resting.filled:
            return VenueAck(accepted=False, reason=f"{resting.filled} already filled")
        resting.request = order
        status = resting.status
        self._work(resting)
        return VenueAck(accepted=True, venue_order_id=venue_order_id, status=status)

    async def cancel(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        resting = self._orders.get(order.client_order_id)
        if resting is None or resting.venue_order_id != venue_order_id:
            return VenueAck(accepted=False, reason=f"no order {venue_order_id}")
        if resting.status not in _WORKING:
            return VenueAck(accepted=False, reason=f"order {venue_order_id} is already {resting.status}")
        resting.status = OrderStatus.CANCELLED
        return VenueAck(accepted=True, venue_order_id=venue_order_id, status=OrderStatus.CANCELLED)

    async def find(self, order: OrderRequest, venue_order_id: str | None = None) -> VenueOrderState | None:
        resting = self._orders.get(order.client_order_id)
        if resting is None:
            return None
        return VenueOrderState(
            client_order_id=order.client_order_id,
            venue_order_id=resting.venue_order_id,
            status=resting.status,
            fills=list(resting.fills),
            reason=resting.reason,
        )

    def _work(self, order: _Resting) -> None:
        request = order.request
        if order.status is OrderStatus.TRIGGER_PENDING:
            _, _, ltp = self._quotes.get(request.instrument, (0, 0, 0))
            reached = (
                ltp >= request.trigger_price if request.side is Side.BUY else 0 < ltp <= request.trigger_price
            )
            if not ltp or not reached:
                return
            order.status = OrderStatus.OPEN
            self._emit(
                VenueOrderEvent(
                    client_order_id=request.client_order_id,
                    venue_order_id=order.venue_order_id,
                    status=OrderStatus.OPEN,
                    ts_ns=self._clock(),
                )
            )
        price = self._fill_price(request)
        if price is None:
            return
        limited = request.order_type in (OrderType.LIMIT, OrderType.SL)
        if limited and (price > request.price if request.side is Side.BUY else price < request.price):
            return
        quantity = request.quantity - order.filled
        fill = Fill(
            client_order_id=request.client_order_id,
            venue_order_id=order.venue_order_id,
            trade_id=f"PT{next(self._trades)}",
            book=request.book,
            instrument=request.instrument,
            side=request.side,
            quantity=quantity,
            price=price,
            product=request.product,
            ts_ns=self._clock(),
        )
        order.fills.append(fill)
        order.status = OrderStatus.FILLED
        self._emit(fill)

    def _fill_price(self, request: OrderRequest) -> int | None:
        quote = self._quotes.get(request.instrument)
        if quote is None:
            return None
        bid, ask, ltp = quote
        price = ask if request.side is Side.BUY else bid
        return price or ltp or None

    def _emit(self, event: VenueEvent) -> None:
        if self._sink is None:
            return
        try:
            asyncio.get_running_loop().call_soon(self._sink, event)
        except RuntimeError:  # no loop running (plain use): deliver now
            self._sink(event)


_WORKING = (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING)


class ActorVenue:
    """A venue that is a Ray actor with `submit`, `modify`, `cancel` and `find` methods.

    The actor sends its fills and status changes to the execution actor (`on_venue_event`), so
    `attach` has nothing to wire here.
    """

    def __init__(self, handle: Any, name: str = "actor") -> None:
        self._handle = handle
        self.name = name

    @property
    def handle(self) -> Any:
        """The venue actor's handle."""
        return self._handle

    async def submit(self, order: OrderRequest) -> VenueAck:
        ack: VenueAck = await self._handle.submit.remote(order)
        return ack

    async def modify(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        ack: VenueAck = await self._handle.modify.remote(order, venue_order_id)
        return ack

    async def cancel(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        ack: VenueAck = await self._handle.cancel.remote(order, venue_order_id)
        return ack

    async def find(self, order: OrderRequest, venue_order_id: str | None = None) -> VenueOrderState | None:
        state: VenueOrderState | None = await self._handle.find.remote(order, venue_order_id)
        return state

    def attach(self, sink: EventSink) -> None:
        return None
