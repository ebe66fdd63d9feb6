"""Request and response bodies of the REST API, all in one place.

Prices cross this edge as rupees: requests accept a decimal string or a JSON number (read through
its shortest decimal form) and responses give decimal strings, so no amount is ever rounded by a
binary float. Behind the edge everything is integer paise.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from actors.orders import OrderType, Product, Side, Validity
from cluster.config import Role
from serve.channels import CANDLE_INTERVALS, INSTRUMENT_KEY
from serve.prices import PriceError, minor_to_rupees, rupees_to_minor

INT64_MAX = 2**63 - 1


def _rupees(value: Any) -> Decimal:
    """Accept rupees as a string or number; refuse more than 7 decimal places (the finest unit)."""
    try:
        minor = rupees_to_minor(value, 10**7)
    except PriceError as err:
        raise ValueError(str(err)) from None
    # The shortest exact form ("812.53", "100"), so messages and echoes read as typed.
    amount = Decimal(minor_to_rupees(minor, 10**7).rstrip("0").rstrip("."))
    if amount < 0:
        raise ValueError("must not be negative")
    if minor > INT64_MAX:  # prices travel as int64 minor units behind this edge
        raise ValueError(f"must be below {minor_to_rupees(INT64_MAX, 10**7).split('.')[0]} rupees")
    return amount


# A rupee amount, exact; converted to the instrument's minor unit (and checked against its tick)
# by the service, which knows the instrument.
Rupees = Annotated[Decimal, BeforeValidator(_rupees)]
InstrumentKey = Annotated[str, Field(pattern=INSTRUMENT_KEY.pattern, examples=["NSE:3045"])]
Quantity = Annotated[int, Field(gt=0, le=10_000_000, description="units, not lots")]
Book = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
ClientOrderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# Auth ---------------------------------------------------------------------------------------------


class LoginRequest(Request):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class RefreshRequest(Request):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class UserResponse(Response):
    username: str
    role: Role
    permissions: list[str]


class TokenResponse(Response):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: int
    refresh_expires_at: int
    user: UserResponse


# Market data --------------------------------------------------------------------------------------


class InstrumentResponse(Response):
    key: str
    symbol: str
    name: str
    exchange: str
    token: str
    instrument_type: str
    lot_size: int
    tick_size: str  # rupees
    expiry: str | None = None  # ISO date
    strike: str | None = None  # rupees
    option_type: str | None = None


class OptionChainRow(Response):
    strike: str
    call: InstrumentResponse | None = None
    put: InstrumentResponse | None = None


class OptionChainResponse(Response):
    underlying: str
    expiry: str | None
    expiries: list[str]
    rows: list[OptionChainRow]


CandleInterval = Literal["1m", "3m", "5m", "15m", "30m", "1h", "1d"]
assert set(CandleInterval.__args__) == set(CANDLE_INTERVALS)  # type: ignore[attr-defined]


class CandleResponse(Response):
    time: int  # bucket start, epoch seconds
    open: str
    high: str
    low: str
    close: str
    volume: int


class QuoteResponse(Response):
    instrument: str
    ltp: str | None
    change: str | None = None
    change_pct: str | None = None
    open: str | None = None
    high: str | None = None
    low: str | None = None
    close: str | None = None  # previous close
    bid: str | None = None
    ask: str | None = None
    bid_qty: int | None = None
    ask_qty: int | None = None
    volume: int | None = None
    oi: int | None = None
    ts_ns: int | None = None


class DepthLevel(Response):
    price: str
    quantity: int
    orders: int | None = None


class DepthResponse(Response):
    instrument: str
    bids: list[DepthLevel]
    asks: list[DepthLevel]
    ts_ns: int | None = None


# Orders -------------------------------------------------------------------------------------------


class PlaceOrderRequest(Request):
    instrument: InstrumentKey
    side: Side
    quantity: Quantity
    order_type: OrderType = OrderType.MARKET
    product: Product = Product.INTRADAY
    validity: Validity = Validity.DAY
    price: Rupees | None = Field(default=None, description="limit price in rupees (LIMIT, SL)")
    trigger_price: Rupees | None = Field(default=None, description="trigger in rupees (SL, SL-M)")
    book: Book = "manual"
    tag: Annotated[str, Field(max_length=20, pattern=r"^[\w.-]*$")] = ""
    client_order_id: ClientOrderId | None = Field(
        default=None, description="idempotency key: resending the same id never places a second order"
    )

    @model_validator(mode="after")
    def _prices_match_type(self) -> PlaceOrderRequest:
        needs_price = self.order_type in (OrderType.LIMIT, OrderType.SL)
        needs_trigger = self.order_type in (OrderType.SL, OrderType.SL_M)
        if needs_price and not self.price:
            raise ValueError(f"price: a {self.order_type.value} order needs a price above zero")
        if not needs_price and self.price:
            raise ValueError(f"price: a {self.order_type.value} order takes no price")
        if needs_trigger and not self.trigger_price:
            raise ValueError(
                f"trigger_price: a {self.order_type.value} order needs a trigger price above zero"
            )
        if not needs_trigger and self.trigger_price:
            raise ValueError(f"trigger_price: a {self.order_type.value} order takes no trigger price")
        return self


class ModifyOrderRequest(Request):
    quantity: Quantity | None = None
    price: Rupees | None = None
    trigger_price: Rupees | None = None

    @model_validator(mode="after")
    def _something(self) -> ModifyOrderRequest:
        if self.quantity is None and self.price is None and self.trigger_price is None:
            raise ValueError("give at least one of quantity, price, trigger_price")
        return self


class MarginRequest(Request):
    instrument: InstrumentKey
    side: Side
    quantity: Quantity
    order_type: OrderType = OrderType.MARKET
    product: Product = Product.INTRADAY
    price: Rupees | None = None


class MarginResponse(Response):
    instrument: str
    quantity: int
    price: str  # the price the margin was computed at
    value: str
    margin: str
    available: str | None = None


class OrderResponse(Response):
    """An order's current state; request fields appear when the execution actor reports them."""

    model_config = ConfigDict(frozen=True, extra="allow")

    client_order_id: str
    venue_order_id: str | None = None
    book: str
    instrument: str
    status: str
    filled_quantity: int = 0
    avg_price: str = "0.00"
    reason: str = ""
    ts_ns: int = 0


class SquareOffRequest(Request):
    book: Book = "manual"
    instrument: InstrumentKey


class FlattenRequest(Request):
    book: Book = "manual"
    confirm: Literal[True] = Field(description="must be true: closes every position in the book")


# GTT and brackets ---------------------------------------------------------------------------------


class GttLeg(Request):
    trigger_price: Rupees
    price: Rupees = Field(description="limit price placed when the trigger is hit")


class GttCreateRequest(Request):
    instrument: InstrumentKey
    side: Side
    quantity: Quantity
    product: Product = Product.DELIVERY
    trigger_price: Rupees
    price: Rupees
    book: Book = "manual"
    # A second leg makes it an OCO pair (target and stop): whichever triggers first cancels the other.
    other_leg: GttLeg | None = None

    @model_validator(mode="after")
    def _positive(self) -> GttCreateRequest:
        if not self.trigger_price or not self.price:
            raise ValueError("trigger_price and price must be above zero")
        return self


class GttModifyRequest(Request):
    quantity: Quantity | None = None
    trigger_price: Rupees | None = None
    price: Rupees | None = None
    other_leg: GttLeg | None = None


class BracketRequest(Request):
    instrument: InstrumentKey
    side: Side
    quantity: Quantity
    product: Product = Product.INTRADAY
    entry_type: Literal[OrderType.MARKET, OrderType.LIMIT] = OrderType.LIMIT
    price: Rupees | None = Field(default=None, description="entry limit price (LIMIT entries)")
    stop_loss: Rupees = Field(description="stop-loss exit price")
    target: Rupees = Field(description="target exit price")
    trailing_stop: Rupees | None = Field(default=None, description="trail distance in rupees")
    book: Book = "manual"

    @model_validator(mode="after")
    def _sides(self) -> BracketRequest:
        if self.entry_type is OrderType.LIMIT and not self.price:
            raise ValueError("price: a LIMIT entry needs a price above zero")
        if self.entry_type is OrderType.MARKET and self.price:
            raise ValueError("price: a MARKET entry takes no price")
        if not self.stop_loss or not self.target:
            raise ValueError("stop_loss and target must be above zero")
        if self.price:
            below, above = (
                (self.stop_loss, self.target) if self.side is Side.BUY else (self.target, self.stop_loss)
            )
            if not below < self.price < above:
                which = (
                    "stop_loss < price < target" if self.side is Side.BUY else "target < price < stop_loss"
                )
                raise ValueError(f"a {self.side.value} bracket needs {which}")
        elif self.side is Side.BUY and not self.stop_loss < self.target:
            raise ValueError("a BUY bracket needs stop_loss < target")
        elif self.side is Side.SELL and not self.target < self.stop_loss:
            raise ValueError("a SELL bracket needs target < stop_loss")
        return self


class BracketModifyRequest(Request):
    stop_loss: Rupees | None = None
    target: Rupees | None = None
    trailing_stop: Rupees | None = None


# Deployments and risk -----------------------------------------------------------------------------


class ScaleRequest(Request):
    shards: Annotated[int, Field(gt=0, le=64)]


class SwapRequest(Request):
    strategy: Annotated[str, Field(pattern=r"^[\w.]+:\w+$")]
    config: dict[str, Any] = Field(default_factory=dict)


class KillSwitchRequest(Request):
    engaged: bool
    book: Book | None = Field(default=None, description="one book, or every book when omitted")


class ErrorDetail(Response):
    field: str | None = None
    reason: str


class ErrorResponse(Response):
    error: str
    message: str
    detail: list[ErrorDetail] = Field(default_factory=list)
