"""What the journal determines: orders, trades, positions, GTT rules and brackets, changed only by records.

`PortfolioState.apply` is the one place state changes. It makes no decisions and reads no market
data, so applying the same records always gives the same state: that is how a restart rebuilds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction

import msgspec

from actors.orders import TERMINAL_STATUSES, Fill, OrderRequest, OrderStatus, OrderUpdate, Product, Side
from actors.portfolio.brackets import Bracket, BracketStatus
from actors.portfolio.charges import NO_CHARGES, Charges
from actors.portfolio.gtt import GttState, GttStatus
from actors.portfolio.positions import PositionBook
from actors.portfolio.records import (
    AnyRecord,
    BracketClosed,
    BracketModified,
    BracketPlaced,
    BracketStopMoved,
    EntryHaltSet,
    FillBooked,
    GttClosed,
    GttCreated,
    GttModified,
    GttTriggered,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderRole,
    OrderTriggered,
    OrderWorking,
    PositionSettled,
    SessionStarted,
    SquareOffStarted,
)


@dataclass(slots=True)
class PaperOrder:
    request: OrderRequest
    venue_order_id: str
    role: OrderRole
    parent: str  # the GTT or bracket that placed it, or ""
    margin: int  # blocked for the whole quantity at acceptance
    status: OrderStatus
    ts_ns: int
    filled_quantity: int = 0
    filled_value: int = 0
    triggered: bool = False
    reason: str = ""
    charges: Charges = NO_CHARGES
    # Quantity filled before the matching engine last received this order (after a restore).
    engine_offset: int = 0

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def quantity(self) -> int:
        return self.request.quantity

    @property
    def leaves_quantity(self) -> int:
        return self.quantity - self.filled_quantity

    @property
    def is_active(self) -> bool:
        return self.status not in TERMINAL_STATUSES

    @property
    def avg_price(self) -> int:
        """Average fill price, whole paise rounded half up (the order book's convention)."""
        if not self.filled_quantity:
            return 0
        return (2 * self.filled_value + self.filled_quantity) // (2 * self.filled_quantity)

    @property
    def blocked_margin(self) -> int:
        """Margin still blocked: the share of the order's margin its unfilled part carries."""
        if not self.is_active or not self.quantity:
            return 0
        return math.ceil(Fraction(self.margin * self.leaves_quantity, self.quantity))

    def update(self, ts_ns: int | None = None, fill: Fill | None = None) -> OrderUpdate:
        return OrderUpdate(
            client_order_id=self.client_order_id,
            venue_order_id=self.venue_order_id,
            book=self.request.book,
            instrument=self.request.instrument,
            status=self.status,
            filled_quantity=self.filled_quantity,
            avg_price=self.avg_price,
            reason=self.reason,
            ts_ns=self.ts_ns if ts_ns is None else ts_ns,
            fill=fill,
        )


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill (or settlement) as booked, with its charges and the P&L it realized."""

    trade_id: str
    client_order_id: str
    venue_order_id: str
    book: str
    instrument: str
    side: Side
    quantity: int
    price: int
    product: Product
    ts_ns: int
    charges: Charges
    realized_pnl: Fraction
    reason: str = ""  # "" for an order fill; why, for a settlement

    def as_fill(self) -> Fill:
        """The fill this trade booked, as the venue reported it (charges as its commission)."""
        return Fill(
            client_order_id=self.client_order_id,
            venue_order_id=self.venue_order_id,
            trade_id=self.trade_id,
            book=self.book,
            instrument=self.instrument,
            side=self.side,
            quantity=self.quantity,
            price=self.price,
            product=self.product,
            ts_ns=self.ts_ns,
            commission=self.charges.total,
        )


@dataclass(slots=True)
class Counters:
    """Sequence numbers for ids; they grow as records are applied, so a replay gives the same ids."""

    orders: int = 0
    trades: int = 0
    gtts: int = 0
    brackets: int = 0


@dataclass(slots=True)
class Applied:
    """What applying one record produced: an order update to report, a bracket to look at again."""

    update: OrderUpdate | None = None
    bracket_id: str | None = None


@dataclass
class PortfolioState:
    positions: PositionBook = field(default_factory=PositionBook)
    orders: dict[str, PaperOrder] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    gtts: dict[str, GttState] = field(default_factory=dict)
    brackets: dict[str, Bracket] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    session: date | None = None
    squared_off: date | None = None
    # Ids of active GTT rules and live brackets per instrument, so a quote looks at its own only.
    trade_ids: set[str] = field(default_factory=set)
    active_gtts: dict[str, list[str]] = field(default_factory=dict)
    live_brackets: dict[str, list[str]] = field(default_factory=dict)
    # Engaged kill switches by book (None: every book), with their reasons.
    entry_halts: dict[str | None, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (
            self.orders or self.trades or self.gtts or self.brackets or self.session or self.entry_halts
        )

    def working_quantity(
        self, book: str, instrument: str, product: Product, side: Side, excluding: PaperOrder | None = None
    ) -> int:
        """Unfilled quantity of a book's working orders on one side of one position."""
        return sum(
            o.leaves_quantity
            for o in self.orders.values()
            if o.is_active
            and o is not excluding
            and o.request.book == book
            and o.request.instrument == instrument
            and o.request.product is product
            and o.request.side is side
        )

    def books(self) -> list[str]:
        """Every book with a position, a working order, an active rule or a live bracket."""
        names = set(self.positions.books())
        names.update(o.request.book for o in self.orders.values() if o.is_active)
        names.update(s.rule.book for s in self.gtts.values() if s.is_active)
        names.update(b.spec.book for b in self.brackets.values() if b.is_live)
        return sorted(names)

    # ---------------------------------------------------------------------------------- apply

    def apply(self, record: AnyRecord) -> Applied:
        match record:
            case OrderAccepted():
                return self._accepted(record)
            case OrderRejected():
                return self._rejected(record)
            case OrderWorking():
                return self._order_changed(record.client_order_id, record.ts_ns, status=record.status)
            case OrderTriggered():
                order = self.orders[record.client_order_id]
                order.triggered = True
                status = OrderStatus.PARTIALLY_FILLED if order.filled_quantity else OrderStatus.OPEN
                return self._order_changed(record.client_order_id, record.ts_ns, status=status)
            case OrderFilled():
                return self._filled(record)
            case OrderModified():
                order = self.orders[record.client_order_id]
                order.request = msgspec.structs.replace(
                    order.request,
                    quantity=record.quantity,
                    price=record.price,
                    trigger_price=record.trigger_price,
                    order_type=record.order_type,
                )
                order.margin = record.margin
                return self._order_changed(record.client_order_id, record.ts_ns)
            case OrderCancelled():
                return self._order_changed(
                    record.client_order_id, record.ts_ns, status=OrderStatus.CANCELLED, reason=record.reason
                )
            case PositionSettled():
                return self._settled(record)
            case FillBooked():
                fill = record.fill
                realized = self._book(
                    fill.book,
                    fill.instrument,
                    fill.product,
                    fill.side,
                    fill.quantity,
                    fill.price,
                    record.charges,
                )
                self.trades.append(
                    Trade(
                        trade_id=fill.trade_id,
                        client_order_id=fill.client_order_id,
                        venue_order_id=fill.venue_order_id,
                        book=fill.book,
                        instrument=fill.instrument,
                        side=fill.side,
                        quantity=fill.quantity,
                        price=fill.price,
                        product=fill.product,
                        ts_ns=fill.ts_ns,
                        charges=record.charges,
                        realized_pnl=realized,
                        reason="booked",
                    )
                )
                self.trade_ids.add(fill.trade_id)
            case SessionStarted():
                for position in self.positions:
                    position.roll_session()
                self.session = record.session
            case SquareOffStarted():
                self.squared_off = record.session
            case GttCreated():
                self.counters.gtts += 1
                self.gtts[record.rule.gtt_id] = GttState(rule=record.rule, updated_ts_ns=record.ts_ns)
                self.active_gtts.setdefault(record.rule.instrument, []).append(record.rule.gtt_id)
            case GttModified():
                state = self.gtts[record.rule.gtt_id]
                state.rule = record.rule
                state.updated_ts_ns = record.ts_ns
            case GttTriggered():
                state = self.gtts[record.gtt_id]
                state.status = GttStatus.TRIGGERED
                state.triggered_leg = record.leg
                state.order_id = record.client_order_id
                state.updated_ts_ns = record.ts_ns
                _forget(self.active_gtts, state.rule.instrument, record.gtt_id)
            case GttClosed():
                state = self.gtts[record.gtt_id]
                state.status = record.status
                state.reason = record.reason
                state.updated_ts_ns = record.ts_ns
                _forget(self.active_gtts, state.rule.instrument, record.gtt_id)
            case BracketPlaced():
                self.counters.brackets += 1
                self.brackets[record.spec.bracket_id] = Bracket.placed(record.spec)
                self.live_brackets.setdefault(record.spec.instrument, []).append(record.spec.bracket_id)
            case BracketModified():
                bracket = self.brackets[record.bracket_id]
                bracket.stop_loss = record.stop_loss
                bracket.target = record.target
                bracket.trailing_stop = record.trailing_stop
            case BracketStopMoved():
                bracket = self.brackets[record.bracket_id]
                bracket.stop_loss = record.stop_loss
                bracket.anchor = record.anchor
            case BracketClosed():
                bracket = self.brackets[record.bracket_id]
                bracket.status = record.status
                bracket.reason = record.reason
                _forget(self.live_brackets, bracket.spec.instrument, record.bracket_id)
            case EntryHaltSet():
                if record.engaged:
                    self.entry_halts[record.book] = record.reason
                else:
                    self.entry_halts.pop(record.book, None)
        return Applied()

    def _accepted(self, record: OrderAccepted) -> Applied:
        self.counters.orders += 1
        order = PaperOrder(
            request=record.request,
            venue_order_id=record.venue_order_id,
            role=record.role,
            parent=record.parent,
            margin=record.margin,
            status=OrderStatus.PENDING,
            ts_ns=record.ts_ns,
        )
        self.orders[order.client_order_id] = order
        self._link_to_bracket(order)
        return Applied()  # reported once the engine says it is working

    def _rejected(self, record: OrderRejected) -> Applied:
        order = self.orders.get(record.request.client_order_id)
        if order is None:  # refused before acceptance
            self.counters.orders += 1
            order = PaperOrder(
                request=record.request,
                venue_order_id=record.venue_order_id,
                role=record.role,
                parent=record.parent,
                margin=0,
                status=OrderStatus.REJECTED,
                ts_ns=record.ts_ns,
            )
            self.orders[order.client_order_id] = order
            self._link_to_bracket(order)
        return self._order_changed(
            order.client_order_id, record.ts_ns, status=OrderStatus.REJECTED, reason=record.reason
        )

    def _order_changed(
        self,
        client_order_id: str,
        ts_ns: int,
        *,
        status: OrderStatus | None = None,
        reason: str | None = None,
    ) -> Applied:
        order = self.orders[client_order_id]
        if status is not None:
            order.status = status
        if reason is not None:
            order.reason = reason
        order.ts_ns = ts_ns
        return Applied(order.update(), self._bracket_of(order))

    def _filled(self, record: OrderFilled) -> Applied:
        order = self.orders[record.client_order_id]
        request = order.request
        order.filled_quantity += record.quantity
        order.filled_value += record.quantity * record.price
        order.charges = order.charges + record.charges
        order.status = OrderStatus.FILLED if order.leaves_quantity == 0 else OrderStatus.PARTIALLY_FILLED
        order.ts_ns = record.ts_ns
        realized = self._book(
            request.book, request.instrument, request.product, request.side, record.quantity, record.price,
            record.charges,
        )  # fmt: skip
        self.trade_ids.add(record.trade_id)
        trade = Trade(
            trade_id=record.trade_id,
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id,
            book=request.book,
            instrument=request.instrument,
            side=request.side,
            quantity=record.quantity,
            price=record.price,
            product=request.product,
            ts_ns=record.ts_ns,
            charges=record.charges,
            realized_pnl=realized,
        )
        self.trades.append(trade)
        bracket = self.brackets.get(order.parent) if order.parent else None
        if bracket is not None:
            if order.role is OrderRole.ENTRY:
                bracket.entry_filled += record.quantity
                if bracket.anchor is None:
                    bracket.anchor = record.price
                if bracket.status is BracketStatus.PENDING:
                    bracket.status = BracketStatus.ACTIVE
            else:
                bracket.exited += record.quantity
        return Applied(order.update(fill=trade.as_fill()), self._bracket_of(order))

    def _settled(self, record: PositionSettled) -> Applied:
        realized = self._book(
            record.book,
            record.instrument,
            record.product,
            record.side,
            record.quantity,
            record.price,
            record.charges,
        )
        client_order_id = f"settle-{record.trade_id}"
        self.trade_ids.add(record.trade_id)
        self.trades.append(
            Trade(
                trade_id=record.trade_id,
                client_order_id=client_order_id,
                venue_order_id="",
                book=record.book,
                instrument=record.instrument,
                side=record.side,
                quantity=record.quantity,
                price=record.price,
                product=record.product,
                ts_ns=record.ts_ns,
                charges=record.charges,
                realized_pnl=realized,
                reason=record.reason,
            )
        )
        update = OrderUpdate(
            client_order_id=client_order_id,
            venue_order_id=None,
            book=record.book,
            instrument=record.instrument,
            status=OrderStatus.FILLED,
            filled_quantity=record.quantity,
            avg_price=record.price,
            reason=record.reason,
            ts_ns=record.ts_ns,
            fill=self.trades[-1].as_fill(),
        )
        return Applied(update)

    def _book(
        self,
        book: str,
        instrument: str,
        product: Product,
        side: Side,
        quantity: int,
        price: int,
        charges: Charges,
    ) -> Fraction:
        position = self.positions.get(book, instrument, product)
        realized = position.apply_fill(side, quantity, price)
        position.add_charges(charges)
        self.counters.trades += 1
        return realized

    def _link_to_bracket(self, order: PaperOrder) -> None:
        bracket = self.brackets.get(order.parent) if order.parent else None
        if bracket is None:
            return
        if order.role is OrderRole.ENTRY:
            bracket.entry_order_id = order.client_order_id
        elif order.role is OrderRole.TARGET:
            bracket.target_order_id = order.client_order_id
        elif order.role is OrderRole.STOP:
            bracket.stop_order_id = order.client_order_id
        elif order.role is OrderRole.EXIT:
            bracket.exit_order_ids.append(order.client_order_id)

    def _bracket_of(self, order: PaperOrder) -> str | None:
        return order.parent if order.parent in self.brackets else None


def _forget(index: dict[str, list[str]], instrument: str, ident: str) -> None:
    ids = index.get(instrument)
    if ids is not None and ident in ids:
        ids.remove(ident)
        if not ids:
            del index[instrument]
