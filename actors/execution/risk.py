"""Pre-trade risk: every order is checked here before it is journaled and sent.

`PreTradeRisk` is plain and deterministic: it sees orders, fills, marks (last prices) and kill
switch commands, all passed in with their timestamps. Each rejection is one sentence a trader
understands, with the numbers that broke the rule. Limits apply per book (a deployment's own
`risk:` section, or the global one) and globally; money is exact (paise, `Fraction` for averages).

Checks, in order: kill switches (only position-reducing orders pass an engaged one), the order's
shape (quantity, prices, lot and tick multiples, product for the segment), maximum quantity,
price band against the last price, maximum value, position limit, and no naked short selling in
cash DELIVERY.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple, Protocol

import msgspec

from actors.orders import Fill, OrderRequest, OrderType, Product, Side
from actors.portfolio.money import format_rupees, rupees_to_paise
from cluster.config import DeploymentConfig, RiskConfig

CASH_EXCHANGES = frozenset({"NSE", "BSE"})
CASH_PRODUCTS = frozenset({Product.INTRADAY, Product.DELIVERY, Product.MARGIN})
DERIVATIVE_PRODUCTS = frozenset({Product.INTRADAY, Product.CARRYFORWARD})
INDEX_TYPES = frozenset({"AMXIDX"})
# Minor units per rupee where a segment does not quote in paise.
PRICE_SCALES = {"CDS": 10_000_000}


class InstrumentInfo(Protocol):
    """What risk needs of an instrument; `catalog.instrument.Instrument` has it."""

    @property
    def exchange(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def instrument_type(self) -> str: ...
    @property
    def lot_size(self) -> int: ...
    @property
    def tick_size(self) -> int: ...


InstrumentLookup = Callable[[str], InstrumentInfo | None]


def exchange_of(instrument: str) -> str:
    return instrument.partition(":")[0]


def to_paise(minor: int | Fraction, exchange: str) -> Fraction:
    """An amount in the exchange's minor unit as paise."""
    scale = PRICE_SCALES.get(exchange, 100)
    return Fraction(minor) * 100 / scale


def money(minor: int | Fraction, exchange: str = "NSE") -> str:
    return format_rupees(to_paise(minor, exchange))


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True):
    """One set of limits; money in paise."""

    max_order_qty: int
    max_order_value: int
    price_band_pct: Decimal
    max_position_qty: int
    daily_loss_limit: int
    max_drawdown: int | None = None
    allow_short_delivery: bool = False

    @classmethod
    def from_config(cls, config: RiskConfig) -> RiskLimits:
        drawdown = config.max_drawdown_rupees
        return cls(
            max_order_qty=config.max_order_qty,
            max_order_value=rupees_to_paise(config.max_order_value_rupees),
            price_band_pct=Decimal(str(config.price_band_pct)),
            max_position_qty=config.max_position_qty,
            daily_loss_limit=rupees_to_paise(config.daily_loss_limit_rupees),
            max_drawdown=None if drawdown is None else rupees_to_paise(drawdown),
            allow_short_delivery=config.allow_short_delivery,
        )


class Exposure(NamedTuple):
    """A book's working orders in one instrument (remaining quantities), as the engine knows them."""

    open_buy: int = 0
    open_sell: int = 0
    open_delivery_sell: int = 0


class KillSwitch(msgspec.Struct, frozen=True, kw_only=True):
    engaged: bool
    reason: str = ""
    ts_ns: int = 0


class KillSwitchTrip(NamedTuple):
    """A limit was crossed: the engine journals this, then engages the switch."""

    book: str | None  # None: the global switch
    reason: str


class PositionState:
    """Signed quantity, exact average price and realized P&L of one (book, instrument, product)."""

    __slots__ = ("avg_price", "quantity", "realized")

    def __init__(self) -> None:
        self.quantity = 0
        self.avg_price = Fraction(0)
        self.realized = Fraction(0)

    def apply(self, side: Side, quantity: int, price: int) -> None:
        signed = quantity if side is Side.BUY else -quantity
        if self.quantity == 0 or (self.quantity > 0) == (signed > 0):
            total = self.quantity + signed
            self.avg_price = (self.avg_price * abs(self.quantity) + price * quantity) / abs(total)
            self.quantity = total
            return
        closing = min(quantity, abs(self.quantity))
        direction = 1 if self.quantity > 0 else -1
        self.realized += (price - self.avg_price) * closing * direction
        self.quantity += signed
        if self.quantity == 0:
            self.avg_price = Fraction(0)
        elif (self.quantity > 0) != (direction > 0):  # flipped: the rest opens at the fill price
            self.avg_price = Fraction(price)

    def unrealized(self, mark: int | None) -> Fraction:
        if mark is None or self.quantity == 0:
            return Fraction(0)
        return (mark - self.avg_price) * self.quantity


@dataclass
class BookRisk:
    positions: dict[tuple[str, Product], PositionState] = field(default_factory=dict)
    charges: int = 0
    holdings: dict[str, int] = field(default_factory=dict)  # DELIVERY holdings carried in
    peak_pnl: Fraction = Fraction(0)
    breached: bool = False
    kill: KillSwitch = field(default_factory=lambda: KillSwitch(engaged=False))

    def net_quantity(self, instrument: str) -> int:
        return sum(p.quantity for (i, _), p in self.positions.items() if i == instrument)


class BookRiskState(msgspec.Struct, frozen=True, kw_only=True):
    kill_switch: KillSwitch
    realized_pnl: Decimal  # rupees
    unrealized_pnl: Decimal
    charges: Decimal
    pnl: Decimal  # realized + unrealized − charges
    peak_pnl: Decimal
    positions: dict[str, int]  # "EXCH:token|PRODUCT" -> signed quantity, non-zero only
    holdings: dict[str, int]


class RiskState(msgspec.Struct, frozen=True, kw_only=True):
    global_kill_switch: KillSwitch
    pnl: Decimal
    books: dict[str, BookRiskState]
    marks: dict[str, int]


class PreTradeRisk:
    """Checks orders against limits and tracks what the limits are measured on.

    Parameters
    ----------
    limits
        The global limits, also used for books without their own.
    book_limits
        A deployment's own limits, applied together with the global ones.
    global_daily_loss_limit
        Loss (paise) across all books that engages the global kill switch.
    instruments
        Looks up an "EXCH:token" key; orders for keys it does not know are refused. Without it,
        lot and tick sizes are not checked.
    """

    def __init__(
        self,
        limits: RiskLimits,
        *,
        book_limits: Mapping[str, RiskLimits] | None = None,
        global_daily_loss_limit: int,
        instruments: InstrumentLookup | None = None,
    ) -> None:
        self.limits = limits
        self.book_limits = dict(book_limits or {})
        self.global_daily_loss_limit = global_daily_loss_limit
        self._instruments = instruments
        self._books: dict[str, BookRisk] = {}
        self._marks: dict[str, int] = {}
        self._global_kill = KillSwitch(engaged=False)
        self._global_breached = False

    @classmethod
    def from_config(
        cls,
        risk: RiskConfig,
        deployments: Iterable[DeploymentConfig] = (),
        instruments: InstrumentLookup | None = None,
    ) -> PreTradeRisk:
        return cls(
            RiskLimits.from_config(risk),
            book_limits={d.name: RiskLimits.from_config(d.risk) for d in deployments if d.risk is not None},
            global_daily_loss_limit=rupees_to_paise(risk.global_daily_loss_limit_rupees),
            instruments=instruments,
        )

    # -- checks ------------------------------------------------------------------------------

    def check(
        self, order: OrderRequest, exposure: Exposure = Exposure(), *, deferred: bool = False
    ) -> str | None:
        """Why `order` must be refused, or None if it may go. `exposure` excludes the order itself.

        A `deferred` order is placed later, when a trigger is reached (a GTT leg): it is not held to
        today's price band or delivery holdings, which say nothing of that moment.
        """
        problem = self._check_shape(order)
        if problem:
            return problem
        book = self._book(order.book)
        reduces = self.reduces_position(order, exposure)
        if not reduces:
            if self._global_kill.engaged:
                return (
                    f"the global kill switch is engaged ({self._global_kill.reason}); "
                    "only orders that reduce a position are accepted"
                )
            if book.kill.engaged:
                return (
                    f"the kill switch for book {order.book} is engaged ({book.kill.reason}); "
                    "only orders that reduce a position are accepted"
                )
        for limits, scope in self._limit_sets(order.book):
            problem = self._check_limits(order, exposure, limits, scope, reduces, deferred)
            if problem:
                return problem
        return None if deferred else self._check_short_delivery(order, exposure)

    def reduces_position(self, order: OrderRequest, exposure: Exposure = Exposure()) -> bool:
        """Whether filling `order` (and the same-side working orders) only shrinks the book's position."""
        position = self._book(order.book).net_quantity(order.instrument)
        if order.side is Side.SELL:
            return position > 0 and order.quantity + exposure.open_sell <= position
        return position < 0 and order.quantity + exposure.open_buy <= -position

    def _check_shape(self, order: OrderRequest) -> str | None:
        exchange, _, token = order.instrument.partition(":")
        if not exchange or not token:
            return f"instrument {order.instrument!r} is not an 'EXCH:token' key"
        if order.quantity <= 0:
            return f"quantity must be positive, got {order.quantity}"
        kind = order.order_type
        if kind in (OrderType.LIMIT, OrderType.SL) and order.price <= 0:
            return f"a {kind} order needs a positive price"
        if kind in (OrderType.MARKET, OrderType.SL_M) and order.price != 0:
            return (
                f"a {kind} order takes no price (got {money(order.price, exchange)}); use a LIMIT or SL order"
            )
        if kind in (OrderType.SL, OrderType.SL_M) and order.trigger_price <= 0:
            return f"a {kind} order needs a positive trigger price"
        if kind in (OrderType.MARKET, OrderType.LIMIT) and order.trigger_price != 0:
            return f"a {kind} order takes no trigger price"
        if kind is OrderType.SL:
            if order.side is Side.BUY and order.trigger_price > order.price:
                return (
                    f"a buy stop-limit's trigger {money(order.trigger_price, exchange)} must not be above "
                    f"its limit price {money(order.price, exchange)}"
                )
            if order.side is Side.SELL and order.trigger_price < order.price:
                return (
                    f"a sell stop-limit's trigger {money(order.trigger_price, exchange)} must not be below "
                    f"its limit price {money(order.price, exchange)}"
                )
        cash = exchange in CASH_EXCHANGES
        allowed = CASH_PRODUCTS if cash else DERIVATIVE_PRODUCTS
        if order.product not in allowed:
            segment = "cash" if cash else f"{exchange} derivatives"
            names = ", ".join(sorted(p.value for p in allowed))
            return f"product {order.product} is not available in {segment}; use {names}"
        if self._instruments is None:
            return None
        info = self._instruments(order.instrument)
        if info is None:
            return f"unknown instrument {order.instrument} (not in today's scrip master)"
        if info.instrument_type in INDEX_TYPES:
            return f"{info.symbol} is an index; it cannot be traded"
        if info.lot_size > 1 and order.quantity % info.lot_size:
            return (
                f"quantity {order.quantity} is not a multiple of {info.symbol}'s lot size {info.lot_size} "
                f"(nearest: {max(info.lot_size, order.quantity - order.quantity % info.lot_size)})"
            )
        for name, price in (("price", order.price), ("trigger price", order.trigger_price)):
            if price and info.tick_size > 0 and price % info.tick_size:
                return (
                    f"{name} {money(price, exchange)} is not a multiple of {info.symbol}'s tick size "
                    f"{money(info.tick_size, exchange)}"
                )
        return None

    def _check_limits(
        self,
        order: OrderRequest,
        exposure: Exposure,
        limits: RiskLimits,
        scope: str,
        reduces: bool,
        deferred: bool,
    ) -> str | None:
        exchange = exchange_of(order.instrument)
        if order.quantity > limits.max_order_qty:
            return (
                f"quantity {order.quantity} exceeds the {scope} maximum order quantity {limits.max_order_qty}"
            )
        last = self._marks.get(order.instrument)
        if last is not None and last > 0 and not deferred:
            for name, given in (("limit price", order.price), ("trigger price", order.trigger_price)):
                if not given:
                    continue
                away = Fraction(abs(given - last) * 100, last)
                if away > Fraction(limits.price_band_pct):
                    band = limits.price_band_pct.normalize()
                    return (
                        f"{name} {money(given, exchange)} is {float(away):.2f}% from the last price "
                        f"{money(last, exchange)}; the {scope} band is ±{band:f}%"
                    )
        price = order.price or order.trigger_price or last
        if not price:
            return (
                f"no last price for {order.instrument} yet, so a market order's value cannot be checked; "
                "send a limit order or wait for a quote"
            )
        value = to_paise(order.quantity * price, exchange)
        if value > limits.max_order_value:
            return (
                f"order value {format_rupees(value)} ({order.quantity} × {money(price, exchange)}) exceeds "
                f"the {scope} maximum {format_rupees(limits.max_order_value)}"
            )
        if reduces:
            return None
        position = self._book(order.book).net_quantity(order.instrument)
        if order.side is Side.BUY:
            projected = position + exposure.open_buy + order.quantity
            working = f"open buys {exposure.open_buy}"
        else:
            projected = position - exposure.open_sell - order.quantity
            working = f"open sells {exposure.open_sell}"
        if abs(projected) > limits.max_position_qty:
            return (
                f"position in {order.instrument} would reach {projected} (now {position}, {working}, "
                f"this order {order.quantity}); the {scope} limit is ±{limits.max_position_qty}"
            )
        return None

    def _check_short_delivery(self, order: OrderRequest, exposure: Exposure) -> str | None:
        if order.side is not Side.SELL or order.product is not Product.DELIVERY:
            return None
        if exchange_of(order.instrument) not in CASH_EXCHANGES:
            return None
        if all(limits.allow_short_delivery for limits, _ in self._limit_sets(order.book)):
            return None
        book = self._book(order.book)
        held = book.holdings.get(order.instrument, 0)
        delivery = book.positions.get((order.instrument, Product.DELIVERY))
        today = delivery.quantity if delivery else 0
        available = held + today - exposure.open_delivery_sell
        if order.quantity > available:
            return (
                f"DELIVERY sell of {order.quantity} {order.instrument} exceeds the {max(available, 0)} "
                f"available (held {held}, bought today {today}, already on sell orders "
                f"{exposure.open_delivery_sell}); short selling in delivery is not allowed"
            )
        return None

    def _limit_sets(self, book: str) -> list[tuple[RiskLimits, str]]:
        own = self.book_limits.get(book)
        sets = [(own, f"book {book}")] if own is not None else []
        return [*sets, (self.limits, "global")]

    # -- what the limits are measured on -----------------------------------------------------

    def mark(self, instrument: str, price: int) -> None:
        if price > 0:
            self._marks[instrument] = price

    def last_price(self, instrument: str) -> int | None:
        return self._marks.get(instrument)

    def on_fill(self, fill: Fill) -> None:
        book = self._book(fill.book)
        key = (fill.instrument, fill.product)
        position = book.positions.get(key)
        if position is None:
            position = book.positions[key] = PositionState()
        position.apply(fill.side, fill.quantity, fill.price)
        book.charges += fill.commission
        self.mark(fill.instrument, fill.price)

    def set_holdings(self, book: str, instrument: str, quantity: int) -> None:
        """DELIVERY holdings the book starts the day with (from the portfolio or the broker)."""
        if quantity < 0:
            raise ValueError(f"holdings cannot be negative: {instrument} {quantity}")
        self._book(book).holdings[instrument] = quantity

    def book_pnl(self, book: str) -> tuple[Fraction, Fraction, int]:
        """(realized, unrealized, charges) of `book`, in paise."""
        state = self._book(book)
        realized = sum(
            (to_paise(p.realized, exchange_of(i)) for (i, _), p in state.positions.items()), Fraction(0)
        )
        unrealized = sum(
            (
                to_paise(p.unrealized(self._marks.get(i)), exchange_of(i))
                for (i, _), p in state.positions.items()
            ),
            Fraction(0),
        )
        return realized, unrealized, state.charges

    def evaluate(self) -> list[KillSwitchTrip]:
        """Measure every book's P&L against its loss and drawdown limits.

        Returns the switches to engage: only on the crossing, so a switch an operator released
        stays released until the loss first recovers and then crosses the limit again.
        """
        trips: list[KillSwitchTrip] = []
        total = Fraction(0)
        for name, book in self._books.items():
            realized, unrealized, charges = self.book_pnl(name)
            pnl = realized + unrealized - charges
            total += pnl
            book.peak_pnl = max(book.peak_pnl, pnl)
            limits = self.book_limits.get(name, self.limits)
            reason = None
            if -pnl >= limits.daily_loss_limit:
                reason = (
                    f"daily loss {format_rupees(-pnl)} reached the limit "
                    f"{format_rupees(limits.daily_loss_limit)}"
                )
            elif limits.max_drawdown is not None and book.peak_pnl - pnl >= limits.max_drawdown:
                reason = (
                    f"drawdown {format_rupees(book.peak_pnl - pnl)} from the day's best "
                    f"{format_rupees(book.peak_pnl)} reached the limit {format_rupees(limits.max_drawdown)}"
                )
            if reason and not book.breached and not book.kill.engaged:
                trips.append(KillSwitchTrip(name, reason))
            book.breached = reason is not None
        breached = -total >= self.global_daily_loss_limit
        if breached and not self._global_breached and not self._global_kill.engaged:
            trips.append(
                KillSwitchTrip(
                    None,
                    f"loss across all books {format_rupees(-total)} reached the global limit "
                    f"{format_rupees(self.global_daily_loss_limit)}",
                )
            )
        self._global_breached = breached
        return trips

    def set_kill_switch(self, book: str | None, engaged: bool, reason: str, ts_ns: int) -> None:
        switch = KillSwitch(engaged=engaged, reason=reason if engaged else "", ts_ns=ts_ns)
        if book is None:
            self._global_kill = switch
        else:
            self._book(book).kill = switch

    def kill_switch(self, book: str | None = None) -> KillSwitch:
        return self._global_kill if book is None else self._book(book).kill

    def engaged_kill_switches(self) -> dict[str | None, str]:
        """The reasons of the switches engaged now, by book (None: the global switch)."""
        engaged: dict[str | None, str] = {
            name: b.kill.reason for name, b in self._books.items() if b.kill.engaged
        }
        if self._global_kill.engaged:
            engaged[None] = self._global_kill.reason
        return engaged

    def state(self) -> RiskState:
        books = {}
        total = Fraction(0)
        for name, book in self._books.items():
            realized, unrealized, charges = self.book_pnl(name)
            pnl = realized + unrealized - charges
            total += pnl
            books[name] = BookRiskState(
                kill_switch=book.kill,
                realized_pnl=_rupees(realized),
                unrealized_pnl=_rupees(unrealized),
                charges=_rupees(Fraction(charges)),
                pnl=_rupees(pnl),
                peak_pnl=_rupees(book.peak_pnl),
                positions={
                    f"{i}|{p}": s.quantity for (i, p), s in sorted(book.positions.items()) if s.quantity
                },
                holdings=dict(sorted(book.holdings.items())),
            )
        return RiskState(
            global_kill_switch=self._global_kill, pnl=_rupees(total), books=books, marks=dict(self._marks)
        )

    def _book(self, book: str) -> BookRisk:
        state = self._books.get(book)
        if state is None:
            state = self._books[book] = BookRisk()
        return state


def _rupees(paise: Fraction) -> Decimal:
    return (Decimal(paise.numerator) / Decimal(paise.denominator) / 100).quantize(Decimal("0.01"))
