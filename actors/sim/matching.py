"""A price-time matching engine that fills orders against a quote (best bid, best ask, last price).

It has no I/O and reads no clock: every call takes the timestamp, so the same inputs give the same
events. The simulator's exchange and the paper portfolio both use it.

Rules
-----
- MARKET fills at the touch: the best ask for a buy, the best bid for a sell.
- LIMIT fills at the touch when it crosses it (price improvement goes to the order), at once or
  when a later quote moves through the limit; otherwise it rests.
- SL (stop-limit) and SL-M (stop-market) wait for the last traded price to reach the trigger
  (at or above it for a buy, at or below for a sell), then act as a LIMIT or a MARKET order.
- With ``partial_fills`` on, a fill takes at most the quantity shown at the touch (rounded down to
  whole lots); what is taken is gone until the next quote.
- IOC orders cancel whatever did not fill at once; DAY orders rest until filled, cancelled or
  expired with `expire_day`.
- A quote without a bid or an ask (an LTP-only feed) uses the last traded price for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from actors.orders import OrderRequest, OrderStatus, OrderType, Side, Validity

__all__ = [
    "InstrumentRules",
    "MatchEvent",
    "MatchingEngine",
    "OrderAccepted",
    "OrderCancelled",
    "OrderFilled",
    "OrderModified",
    "OrderRejected",
    "OrderTriggered",
    "Quote",
    "RestingOrder",
    "format_rupees",
]


def format_rupees(paise: int) -> str:
    """Paise as a rupee amount a trader reads, e.g. 123456 -> '₹1,234.56'."""
    sign = "-" if paise < 0 else ""
    rupees, rest = divmod(abs(paise), 100)
    return f"{sign}₹{rupees:,}.{rest:02d}"


def _status_words(status: OrderStatus) -> str:
    return status.value.lower().replace("_", " ")


@dataclass(frozen=True, slots=True)
class InstrumentRules:
    """What the exchange checks an order against. Prices in paise, quantities in units."""

    key: str  # "EXCH:token"
    tick_size: int
    lot_size: int
    lower_circuit: int = 0  # 0 = no band
    upper_circuit: int = 0
    symbol: str = ""

    def __post_init__(self) -> None:
        if self.tick_size <= 0:
            raise ValueError(f"{self.key}: tick_size must be positive, got {self.tick_size}")
        if self.lot_size <= 0:
            raise ValueError(f"{self.key}: lot_size must be positive, got {self.lot_size}")
        if self.upper_circuit and self.lower_circuit > self.upper_circuit:
            raise ValueError(f"{self.key}: lower circuit above upper circuit")

    @property
    def name(self) -> str:
        return self.symbol or self.key


@dataclass(frozen=True, slots=True)
class Quote:
    bid: int
    ask: int
    ltp: int
    bid_qty: int = 0
    ask_qty: int = 0
    ts_ns: int = 0


# ----------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    order_id: str
    key: str
    status: OrderStatus  # OPEN, or TRIGGER_PENDING for a stop order
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    order_id: str
    key: str
    reason: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderTriggered:
    """A stop order's trigger was reached; it now works as a LIMIT (SL) or MARKET (SL-M) order."""

    order_id: str
    key: str
    ltp: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderFilled:
    order_id: str
    key: str
    side: Side
    quantity: int
    price: int
    filled_quantity: int  # cumulative
    leaves_quantity: int
    trade_id: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderModified:
    order_id: str
    key: str
    quantity: int
    price: int
    trigger_price: int
    order_type: OrderType
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    order_id: str
    key: str
    reason: str
    filled_quantity: int
    ts_ns: int


MatchEvent = OrderAccepted | OrderRejected | OrderTriggered | OrderFilled | OrderModified | OrderCancelled


@dataclass(slots=True, eq=False)  # identity equality: two orders are never "the same order"
class RestingOrder:
    """An order the engine knows about, with its fill state."""

    order_id: str
    key: str
    side: Side
    quantity: int
    order_type: OrderType
    validity: Validity
    price: int
    trigger_price: int
    status: OrderStatus
    ts_ns: int
    filled_quantity: int = 0
    filled_value: int = 0  # sum of qty * price, paise
    triggered: bool = False
    reason: str = ""
    request: OrderRequest | None = field(default=None, repr=False)

    @property
    def leaves_quantity(self) -> int:
        return self.quantity - self.filled_quantity

    @property
    def avg_price(self) -> int:
        """Average fill price in paise, rounded half up (0 before the first fill)."""
        if not self.filled_quantity:
            return 0
        return (2 * self.filled_value + self.filled_quantity) // (2 * self.filled_quantity)

    @property
    def is_active(self) -> bool:
        return self.status in (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING, OrderStatus.PARTIALLY_FILLED)

    @property
    def works_as_market(self) -> bool:
        return self.order_type is OrderType.MARKET or (self.order_type is OrderType.SL_M and self.triggered)

    @property
    def waits_for_trigger(self) -> bool:
        return self.order_type in (OrderType.SL, OrderType.SL_M) and not self.triggered


class MatchingEngine:
    """Orders against per-instrument quotes; every call returns the events it caused.

    Parameters
    ----------
    rules : callable
        ``rules(key) -> InstrumentRules | None``; ``None`` means the instrument is unknown.
    partial_fills : bool
        Limit each fill to the quantity shown at the touch.
    is_open : callable, optional
        ``is_open(ts_ns) -> bool``; orders are refused while it is false. ``None`` = always open.
    """

    def __init__(
        self,
        rules: Callable[[str], InstrumentRules | None],
        *,
        partial_fills: bool = False,
        is_open: Callable[[int], bool] | None = None,
    ) -> None:
        self._rules = rules
        self._partial_fills = partial_fills
        self._is_open = is_open
        self._orders: dict[str, RestingOrder] = {}
        self._active_by_key: dict[str, list[RestingOrder]] = {}
        self._quotes: dict[str, Quote] = {}
        # Liquidity left at the touch since the last quote, when partial fills are on.
        self._bid_left: dict[str, int] = {}
        self._ask_left: dict[str, int] = {}
        self._trade_seq = 0

    # ------------------------------------------------------------------------------- queries

    def order(self, order_id: str) -> RestingOrder | None:
        return self._orders.get(order_id)

    def orders(self) -> list[RestingOrder]:
        return list(self._orders.values())

    def active_keys(self) -> set[str]:
        """Instruments with working orders: the only ones whose quotes can cause events."""
        return {key for key, orders in self._active_by_key.items() if orders}

    def quote(self, key: str) -> Quote | None:
        return self._quotes.get(key)

    # ------------------------------------------------------------------------------- commands

    def submit(self, order: OrderRequest, ts_ns: int) -> list[MatchEvent]:
        """Check an order, accept it and match what crosses at once."""
        oid, key = order.client_order_id, order.instrument
        if oid in self._orders:
            return [OrderRejected(oid, key, f"order id {oid!r} is already in use", ts_ns)]
        rules = self._rules(key)
        reason = self._check_new(order, rules, ts_ns)
        resting = RestingOrder(
            order_id=oid,
            key=key,
            side=order.side,
            quantity=order.quantity,
            order_type=order.order_type,
            validity=order.validity,
            price=order.price,
            trigger_price=order.trigger_price,
            status=OrderStatus.REJECTED if reason else OrderStatus.OPEN,
            ts_ns=ts_ns,
            request=order,
        )
        self._orders[oid] = resting
        if reason:
            resting.reason = reason
            return [OrderRejected(oid, key, reason, ts_ns)]
        if resting.waits_for_trigger:
            resting.status = OrderStatus.TRIGGER_PENDING
        self._active_by_key.setdefault(key, []).append(resting)
        events: list[MatchEvent] = [OrderAccepted(oid, key, resting.status, ts_ns)]
        quote = self._quotes.get(key)
        if quote is not None:
            self._work(resting, quote, ts_ns, events)
        if resting.is_active and resting.validity is Validity.IOC:
            self._cancel(resting, "IOC order: the unfilled quantity was cancelled", ts_ns, events)
        return events

    def on_quote(
        self,
        key: str,
        bid: int,
        ask: int,
        ltp: int,
        ts_ns: int,
        bid_qty: int = 0,
        ask_qty: int = 0,
    ) -> list[MatchEvent]:
        """A new quote for one instrument: trigger stops and fill what now crosses."""
        if bid <= 0 or ask <= 0:  # LTP-only feed: trade at the last price
            bid = ask = ltp
        quote = Quote(bid, ask, ltp, bid_qty, ask_qty, ts_ns)
        self._quotes[key] = quote
        self._bid_left[key] = bid_qty
        self._ask_left[key] = ask_qty
        active = self._active_by_key.get(key)
        if not active:
            return []
        events: list[MatchEvent] = []
        for resting in list(active):  # time priority: oldest first
            self._work(resting, quote, ts_ns, events)
        return events

    def cancel(self, order_id: str, ts_ns: int, reason: str = "cancelled by the user") -> list[MatchEvent]:
        resting = self._orders.get(order_id)
        if resting is None:
            return [OrderRejected(order_id, "", f"cannot cancel: no order with id {order_id!r}", ts_ns)]
        if not resting.is_active:
            why = f"cannot cancel: the order is already {_status_words(resting.status)}"
            return [OrderRejected(order_id, resting.key, why, ts_ns)]
        events: list[MatchEvent] = []
        self._cancel(resting, reason, ts_ns, events)
        return events

    def modify(
        self,
        order_id: str,
        ts_ns: int,
        *,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
        order_type: OrderType | None = None,
    ) -> list[MatchEvent]:
        """Change a working order's quantity, prices or type, then match it again."""
        resting = self._orders.get(order_id)
        if resting is None:
            return [OrderRejected(order_id, "", f"cannot modify: no order with id {order_id!r}", ts_ns)]
        if not resting.is_active:
            why = f"cannot modify: the order is already {_status_words(resting.status)}"
            return [OrderRejected(order_id, resting.key, why, ts_ns)]
        assert resting.request is not None
        new_type = order_type if order_type is not None else resting.order_type
        proposed = msgspec.structs.replace(
            resting.request,
            quantity=quantity if quantity is not None else resting.quantity,
            price=price if price is not None else resting.price,
            trigger_price=trigger_price if trigger_price is not None else resting.trigger_price,
            order_type=new_type,
        )
        rules = self._rules(resting.key)
        reason = self._check_new(proposed, rules, ts_ns, modifying=resting)
        if reason is None and proposed.quantity <= resting.filled_quantity:
            reason = (
                f"cannot modify: the new quantity {proposed.quantity} must exceed the "
                f"{resting.filled_quantity} already filled"
            )
        if reason:
            return [OrderRejected(order_id, resting.key, f"modify refused: {reason}", ts_ns)]
        resting.request = proposed
        resting.quantity = proposed.quantity
        resting.price = proposed.price
        resting.trigger_price = proposed.trigger_price
        if new_type is not resting.order_type:
            resting.order_type = new_type
            resting.triggered = False
        if resting.waits_for_trigger:
            resting.status = OrderStatus.TRIGGER_PENDING
        elif resting.status is OrderStatus.TRIGGER_PENDING:
            resting.status = OrderStatus.OPEN
        events: list[MatchEvent] = [
            OrderModified(
                order_id,
                resting.key,
                resting.quantity,
                resting.price,
                resting.trigger_price,
                resting.order_type,
                ts_ns,
            )
        ]
        quote = self._quotes.get(resting.key)
        if quote is not None:
            self._work(resting, quote, ts_ns, events)
        return events

    def expire_day(self, ts_ns: int) -> list[MatchEvent]:
        """End of session: every working DAY order is cancelled."""
        events: list[MatchEvent] = []
        for resting in [o for orders in self._active_by_key.values() for o in orders]:
            self._cancel(resting, "the trading day ended", ts_ns, events)
        return events

    # ------------------------------------------------------------------------------- internals

    def _check_new(
        self,
        order: OrderRequest,
        rules: InstrumentRules | None,
        ts_ns: int,
        modifying: RestingOrder | None = None,
    ) -> str | None:
        """Why the exchange would refuse this order, or None."""
        if rules is None:
            return f"unknown instrument {order.instrument!r}: no such token on the exchange"
        name = rules.name
        if self._is_open is not None and not self._is_open(ts_ns):
            return f"the market is closed for {name} (trading hours 09:15-15:30 IST, Monday to Friday)"
        if order.quantity <= 0:
            return f"quantity must be positive, got {order.quantity}"
        if order.quantity % rules.lot_size:
            return f"quantity {order.quantity} is not a multiple of the lot size {rules.lot_size} for {name}"
        kind = order.order_type
        if kind is OrderType.MARKET and order.trigger_price:
            return "a MARKET order takes no trigger price"
        if kind in (OrderType.LIMIT, OrderType.SL):
            if order.price <= 0:
                return f"a {kind.value} order needs a positive limit price"
            if order.price % rules.tick_size:
                return (
                    f"price {format_rupees(order.price)} is not a multiple of the tick size "
                    f"{format_rupees(rules.tick_size)} for {name}"
                )
            band = self._band_reason(order.price, rules, "price")
            if band:
                return band
        if kind in (OrderType.SL, OrderType.SL_M):
            if order.validity is Validity.IOC:
                return "stop orders (SL, SL-M) cannot be IOC"
            trig = order.trigger_price
            if trig <= 0:
                return f"a {kind.value} order needs a positive trigger price"
            if trig % rules.tick_size:
                return (
                    f"trigger price {format_rupees(trig)} is not a multiple of the tick size "
                    f"{format_rupees(rules.tick_size)} for {name}"
                )
            band = self._band_reason(trig, rules, "trigger price")
            if band:
                return band
            if kind is OrderType.SL:
                if order.side is Side.BUY and trig > order.price:
                    return (
                        f"a buy stop-limit needs trigger ≤ limit price; got trigger {format_rupees(trig)} "
                        f"above limit {format_rupees(order.price)}"
                    )
                if order.side is Side.SELL and trig < order.price:
                    return (
                        f"a sell stop-limit needs trigger ≥ limit price; got trigger {format_rupees(trig)} "
                        f"below limit {format_rupees(order.price)}"
                    )
            already_triggered = modifying is not None and modifying.triggered and modifying.order_type is kind
            quote = self._quotes.get(order.instrument)
            if quote is not None and not already_triggered:
                if order.side is Side.BUY and trig <= quote.ltp:
                    return (
                        f"a buy stop's trigger {format_rupees(trig)} must be above the last traded "
                        f"price {format_rupees(quote.ltp)}"
                    )
                if order.side is Side.SELL and trig >= quote.ltp:
                    return (
                        f"a sell stop's trigger {format_rupees(trig)} must be below the last traded "
                        f"price {format_rupees(quote.ltp)}"
                    )
        return None

    @staticmethod
    def _band_reason(price: int, rules: InstrumentRules, what: str) -> str | None:
        if rules.upper_circuit and price > rules.upper_circuit:
            return (
                f"{what} {format_rupees(price)} is above the upper circuit "
                f"{format_rupees(rules.upper_circuit)} for {rules.name}"
            )
        if rules.lower_circuit and price < rules.lower_circuit:
            return (
                f"{what} {format_rupees(price)} is below the lower circuit "
                f"{format_rupees(rules.lower_circuit)} for {rules.name}"
            )
        return None

    def _work(self, resting: RestingOrder, quote: Quote, ts_ns: int, events: list[MatchEvent]) -> None:
        """Trigger and fill one working order against a quote, as far as it goes."""
        if not resting.is_active:
            return
        if resting.waits_for_trigger:
            reached = (
                quote.ltp >= resting.trigger_price
                if resting.side is Side.BUY
                else quote.ltp <= resting.trigger_price
            )
            if not reached:
                return
            resting.triggered = True
            resting.status = OrderStatus.OPEN if not resting.filled_quantity else OrderStatus.PARTIALLY_FILLED
            events.append(OrderTriggered(resting.order_id, resting.key, quote.ltp, ts_ns))
        if resting.side is Side.BUY:
            touch = quote.ask
            crosses = resting.works_as_market or touch <= resting.price
        else:
            touch = quote.bid
            crosses = resting.works_as_market or touch >= resting.price
        if touch <= 0 or not crosses:
            return
        qty = resting.leaves_quantity
        if self._partial_fills:
            rules = self._rules(resting.key)
            lot = rules.lot_size if rules else 1
            left = self._ask_left if resting.side is Side.BUY else self._bid_left
            shown = left.get(resting.key, 0)
            qty = min(qty, shown - shown % lot)
            if qty <= 0:
                return
            left[resting.key] = shown - qty
        self._fill(resting, qty, touch, ts_ns, events)

    def _fill(
        self, resting: RestingOrder, qty: int, price: int, ts_ns: int, events: list[MatchEvent]
    ) -> None:
        self._trade_seq += 1
        resting.filled_quantity += qty
        resting.filled_value += qty * price
        done = resting.leaves_quantity == 0
        resting.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        events.append(
            OrderFilled(
                resting.order_id,
                resting.key,
                resting.side,
                qty,
                price,
                resting.filled_quantity,
                resting.leaves_quantity,
                f"T{self._trade_seq:08d}",
                ts_ns,
            )
        )
        if done:
            self._deactivate(resting)

    def _cancel(self, resting: RestingOrder, reason: str, ts_ns: int, events: list[MatchEvent]) -> None:
        resting.status = OrderStatus.CANCELLED
        resting.reason = reason
        self._deactivate(resting)
        events.append(OrderCancelled(resting.order_id, resting.key, reason, resting.filled_quantity, ts_ns))

    def _deactivate(self, resting: RestingOrder) -> None:
        active = self._active_by_key.get(resting.key)
        if active and resting in active:
            active.remove(resting)
            if not active:
                del self._active_by_key[resting.key]
