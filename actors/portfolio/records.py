"""The paper portfolio's journal records: every state change, written before it takes effect.

The portfolio changes state only by applying one of these, so replaying a journal through
`PaperPortfolio.restore` rebuilds exactly the state that wrote it. A record carries the decision,
not the inputs that led to it (the fill price and its charges, not the quote), so replay needs no
market data and gives the same numbers after a change of rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Any

import msgspec

from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, Product, Side
from actors.portfolio.brackets import BracketSpec, BracketStatus
from actors.portfolio.charges import Charges
from actors.portfolio.gtt import GttRule, GttStatus, LegRole


class OrderRole(StrEnum):
    """Why the venue holds an order."""

    CLIENT = "client"  # sent by the execution actor
    GTT = "gtt"  # placed by a GTT rule's trigger
    ENTRY = "entry"  # a bracket's entry
    TARGET = "target"  # a bracket's target exit
    STOP = "stop"  # a bracket's stop-loss exit, placed when the stop is reached
    EXIT = "exit"  # square-off, flatten or the intraday auto square-off


class Record(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    ts_ns: int


class OrderAccepted(Record, tag="order_accepted", frozen=True):
    request: OrderRequest
    venue_order_id: str
    margin: int  # paise blocked for the whole quantity
    role: OrderRole = OrderRole.CLIENT
    parent: str = ""  # the GTT or bracket id that placed it


class OrderRejected(Record, tag="order_rejected", frozen=True):
    """Refused by the venue's checks, or by the exchange rules after acceptance."""

    request: OrderRequest
    venue_order_id: str
    reason: str
    role: OrderRole = OrderRole.CLIENT
    parent: str = ""


class OrderWorking(Record, tag="order_working", frozen=True):
    client_order_id: str
    status: OrderStatus  # OPEN or TRIGGER_PENDING


class OrderTriggered(Record, tag="order_triggered", frozen=True):
    client_order_id: str


class OrderFilled(Record, tag="order_filled", frozen=True):
    client_order_id: str
    trade_id: str
    quantity: int
    price: int
    charges: Charges


class OrderModified(Record, tag="order_modified", frozen=True):
    client_order_id: str
    quantity: int
    price: int
    trigger_price: int
    order_type: OrderType
    margin: int


class OrderCancelled(Record, tag="order_cancelled", frozen=True):
    client_order_id: str
    reason: str


class PositionSettled(Record, tag="position_settled", frozen=True):
    """A derivative closed at expiry (or an intraday position closed at the session's end)."""

    book: str
    instrument: str
    product: Product
    side: Side
    quantity: int
    price: int
    trade_id: str
    charges: Charges
    reason: str


class FillBooked(Record, tag="fill_booked", frozen=True):
    """A fill made elsewhere (a broker, another venue), booked into the accounts with its charges."""

    fill: Fill
    charges: Charges


class SessionStarted(Record, tag="session_started", frozen=True):
    """A new trading day: open quantities become overnight quantities."""

    session: date


class SquareOffStarted(Record, tag="square_off_started", frozen=True):
    session: date


class GttCreated(Record, tag="gtt_created", frozen=True):
    rule: GttRule


class GttModified(Record, tag="gtt_modified", frozen=True):
    rule: GttRule


class GttTriggered(Record, tag="gtt_triggered", frozen=True):
    gtt_id: str
    leg: LegRole
    client_order_id: str


class GttClosed(Record, tag="gtt_closed", frozen=True):
    gtt_id: str
    status: GttStatus  # CANCELLED or EXPIRED
    reason: str


class BracketPlaced(Record, tag="bracket_placed", frozen=True):
    spec: BracketSpec


class BracketModified(Record, tag="bracket_modified", frozen=True):
    bracket_id: str
    stop_loss: int
    target: int
    trailing_stop: int


class BracketStopMoved(Record, tag="bracket_stop_moved", frozen=True):
    bracket_id: str
    stop_loss: int
    anchor: int


class BracketClosed(Record, tag="bracket_closed", frozen=True):
    bracket_id: str
    status: BracketStatus  # CLOSED or CANCELLED
    reason: str


class EntryHaltSet(Record, tag="entry_halt_set", frozen=True):
    """The execution actor's kill switch for a book (None: every book), engaged or released.

    While it is engaged the venue places no order of its own that would open a position there.
    """

    book: str | None
    engaged: bool
    reason: str


AnyRecord = (
    OrderAccepted
    | OrderRejected
    | OrderWorking
    | OrderTriggered
    | OrderFilled
    | OrderModified
    | OrderCancelled
    | PositionSettled
    | FillBooked
    | SessionStarted
    | SquareOffStarted
    | GttCreated
    | GttModified
    | GttTriggered
    | GttClosed
    | BracketPlaced
    | BracketModified
    | BracketStopMoved
    | BracketClosed
    | EntryHaltSet
)


def encode_record(record: AnyRecord) -> dict[str, Any]:
    """A record as plain JSON-ready builtins, its type in the `kind` field."""
    result: dict[str, Any] = msgspec.to_builtins(record)
    return result


def decode_record(data: Mapping[str, Any] | AnyRecord) -> AnyRecord:
    """A record back from builtins; a record that is already decoded passes through."""
    if isinstance(data, Record):
        return data
    try:
        return msgspec.convert(data, AnyRecord)
    except msgspec.ValidationError as err:
        raise ValueError(f"unreadable portfolio journal record ({err}): {dict(data)!r:.200}") from None
