"""The order schema shared by the terminal, REST, strategies, the execution actor and the broker.

Prices are integer paise (minor units) in transport; quantities are in units (not lots).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"  # stop-limit (Angel: STOPLOSS_LIMIT)
    SL_M = "SL-M"  # stop-market (Angel: STOPLOSS_MARKET)


class Product(StrEnum):
    INTRADAY = "INTRADAY"
    DELIVERY = "DELIVERY"
    CARRYFORWARD = "CARRYFORWARD"
    MARGIN = "MARGIN"


class Validity(StrEnum):
    DAY = "DAY"
    IOC = "IOC"


class OrderStatus(StrEnum):
    PENDING = "PENDING"  # accepted by risk, journaled, not yet acknowledged
    OPEN = "OPEN"  # acknowledged by the venue, resting
    TRIGGER_PENDING = "TRIGGER_PENDING"  # stop order waiting for its trigger
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})

# Angel's names for the same things.
ANGEL_ORDER_TYPE = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.SL: "STOPLOSS_LIMIT",
    OrderType.SL_M: "STOPLOSS_MARKET",
}


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    book: str  # "manual" or a deployment name
    instrument: str  # "EXCH:token"
    side: Side
    quantity: int
    order_type: OrderType = OrderType.MARKET
    product: Product = Product.INTRADAY
    validity: Validity = Validity.DAY
    price: int = 0  # paise; LIMIT and SL
    trigger_price: int = 0  # paise; SL and SL-M
    tag: str = ""
    is_exit: bool = False  # exits and cancels go ahead of new entries


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    venue_order_id: str
    trade_id: str
    book: str
    instrument: str
    side: Side
    quantity: int
    price: int  # paise
    product: Product
    ts_ns: int
    commission: int = 0  # paise: brokerage and charges on this fill, as the venue or paper book reports


class OrderUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """An order's new state, as the execution actor reports it to shards and the terminal."""

    client_order_id: str
    venue_order_id: str | None
    book: str
    instrument: str
    status: OrderStatus
    filled_quantity: int = 0
    avg_price: int = 0  # paise
    reason: str = ""
    ts_ns: int = 0
    fill: Fill | None = None
