"""What the portfolio returns to the terminal and the API: plain, read-only snapshots.

Money is in paise: whole paise as ``int``, amounts that can hold a fraction of a paisa (average
prices and the P&L measured against them) as exact ``Fraction``. Field names follow the terminal's
list of money fields (`serve.present.MONEY_FIELDS`) so the edge converts them to rupees.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from actors.orders import OrderType, Product, Side
from actors.portfolio.brackets import Bracket, BracketStatus
from actors.portfolio.charges import Charges
from actors.portfolio.gtt import GttState, GttStatus
from actors.portfolio.positions import Position
from actors.portfolio.state import Trade


def charge_breakdown(charges: Charges) -> dict[str, int]:
    return {name: getattr(charges, name) for name in charges.__struct_fields__} | {"total": charges.total}


@dataclass(frozen=True, slots=True)
class PositionView:
    book: str
    instrument: str
    symbol: str
    product: Product
    quantity: int
    overnight_quantity: int
    day_buy_quantity: int
    day_sell_quantity: int
    buy_value: int  # today's buys, paise
    sell_value: int
    avg_price: Fraction
    last_price: int | None
    value: int  # quantity × last price, signed
    realized_pnl: Fraction
    unrealized_pnl: Fraction
    charges: int
    net_pnl: Fraction  # realized + unrealized - charges
    margin: int

    @classmethod
    def of(cls, p: Position, symbol: str, mark: int | None, margin: int) -> PositionView:
        unrealized = p.unrealized_pnl(mark)
        return cls(
            book=p.book,
            instrument=p.instrument,
            symbol=symbol,
            product=p.product,
            quantity=p.quantity,
            overnight_quantity=p.overnight_quantity,
            day_buy_quantity=p.day_buy_quantity,
            day_sell_quantity=p.day_sell_quantity,
            buy_value=p.day_buy_value,
            sell_value=p.day_sell_value,
            avg_price=p.avg_price,
            last_price=mark,
            value=p.quantity * mark if mark is not None else 0,
            realized_pnl=p.realized_pnl,
            unrealized_pnl=unrealized,
            charges=p.charges.total,
            net_pnl=p.realized_pnl + unrealized - p.charges.total,
            margin=margin,
        )


@dataclass(frozen=True, slots=True)
class TradeView:
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
    charges: int
    charge_breakdown: dict[str, int]
    realized_pnl: Fraction
    reason: str

    @classmethod
    def of(cls, t: Trade) -> TradeView:
        return cls(
            trade_id=t.trade_id,
            client_order_id=t.client_order_id,
            venue_order_id=t.venue_order_id,
            book=t.book,
            instrument=t.instrument,
            side=t.side,
            quantity=t.quantity,
            price=t.price,
            product=t.product,
            ts_ns=t.ts_ns,
            charges=t.charges.total,
            charge_breakdown=charge_breakdown(t.charges),
            realized_pnl=t.realized_pnl,
            reason=t.reason,
        )


@dataclass(frozen=True, slots=True)
class BookSummary:
    book: str
    open_positions: int
    open_orders: int
    realized_pnl: Fraction
    unrealized_pnl: Fraction
    charges: int
    net_pnl: Fraction
    gross_exposure: int  # Σ |quantity| × last price
    net_exposure: int  # Σ quantity × last price
    margin: int  # used by its positions and blocked by its orders


@dataclass(frozen=True, slots=True)
class PortfolioSummary:
    """The whole account: funds, and P&L and exposure across every book (books never net)."""

    starting_cash: int
    cash: Fraction  # starting cash + realized P&L - charges
    margin_used: int  # by open positions
    margin_blocked: int  # by working orders
    margin_available: Fraction  # cash - used - blocked + MTM losses of leveraged positions
    equity: Fraction  # cash + unrealized P&L
    realized_pnl: Fraction
    unrealized_pnl: Fraction
    charges: int
    charge_breakdown: dict[str, int]
    net_pnl: Fraction
    gross_exposure: int
    net_exposure: int
    books: list[BookSummary]


@dataclass(frozen=True, slots=True)
class GttLegView:
    role: str  # TRIGGER, STOP_LOSS or TARGET
    trigger_price: int
    price: int


@dataclass(frozen=True, slots=True)
class GttView:
    gtt_id: str
    book: str
    instrument: str
    side: Side
    quantity: int
    product: Product
    kind: str  # "single" or "oco"
    status: GttStatus
    legs: list[GttLegView]
    created_ts_ns: int
    expires_ts_ns: int
    triggered_leg: str | None
    order_id: str | None
    reason: str

    @classmethod
    def of(cls, state: GttState) -> GttView:
        rule = state.rule
        return cls(
            gtt_id=rule.gtt_id,
            book=rule.book,
            instrument=rule.instrument,
            side=rule.side,
            quantity=rule.quantity,
            product=rule.product,
            kind="oco" if rule.is_oco else "single",
            status=state.status,
            legs=[GttLegView(leg.role.value, leg.trigger_price, leg.price) for leg in rule.legs],
            created_ts_ns=rule.created_ts_ns,
            expires_ts_ns=rule.expires_ts_ns,
            triggered_leg=state.triggered_leg.value if state.triggered_leg else None,
            order_id=state.order_id,
            reason=state.reason,
        )


@dataclass(frozen=True, slots=True)
class BracketView:
    bracket_id: str
    book: str
    instrument: str
    side: Side
    quantity: int
    product: Product
    entry_type: OrderType
    entry_price: int
    stop_loss: int
    target: int
    trailing_stop: int
    status: BracketStatus
    entry_order_id: str
    entry_filled: int
    exited: int
    protected: int  # filled by the entry and not yet exited
    target_order_id: str | None
    stop_order_id: str | None
    reason: str

    @classmethod
    def of(cls, bracket: Bracket) -> BracketView:
        spec = bracket.spec
        return cls(
            bracket_id=spec.bracket_id,
            book=spec.book,
            instrument=spec.instrument,
            side=spec.side,
            quantity=spec.quantity,
            product=spec.product,
            entry_type=spec.entry_type,
            entry_price=spec.entry_price,
            stop_loss=bracket.stop_loss,
            target=bracket.target,
            trailing_stop=bracket.trailing_stop,
            status=bracket.status,
            entry_order_id=bracket.entry_order_id,
            entry_filled=bracket.entry_filled,
            exited=bracket.exited,
            protected=bracket.protected,
            target_order_id=bracket.target_order_id,
            stop_order_id=bracket.stop_order_id,
            reason=bracket.reason,
        )
