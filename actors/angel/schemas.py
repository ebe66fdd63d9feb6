"""SmartAPI wire structs, keeping Angel's own field names, each with a pure `parse_to_*`.

Angel's JSON mixes numbers and strings for the same field ("quantity": "10" or 10, "price":
1234.5 or "1234.50" or ""), so wire fields are typed loosely (`Num`) and converted exactly in the
`parse_to_*` methods: money into integer minor units (paise; 1e-7 rupee on CDS) through
`Decimal`, never through binary floating point arithmetic.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec

from actors.angel.common import GTT_EXCHANGES, GTT_PRODUCTS, MAX_ORDER_TAG_LEN, Variety, price_scale
from actors.orders import ANGEL_ORDER_TYPE, OrderRequest, OrderStatus, OrderType, Product, Side

Num = str | float | int

_S = TypeVar("_S", bound=msgspec.Struct)

ORDER_TYPE_BY_ANGEL = {angel: ours for ours, angel in ANGEL_ORDER_TYPE.items()}


class WireFormatError(ValueError):
    """A broker answer that does not fit its documented shape."""


def convert(data: Any, type_: type[_S], what: str) -> _S:
    """A wire struct from decoded JSON, with a clear error naming the message and the field."""
    try:
        return msgspec.convert(data, type_, strict=False)
    except msgspec.ValidationError as err:
        raise WireFormatError(f"{what}: {err}") from None


def convert_rows(data: Any, type_: type[_S], what: str) -> list[_S]:
    """A list of wire structs; Angel answers an empty book with `data: null`."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise WireFormatError(f"{what}: expected a list, got {type(data).__name__}")
    return [convert(row, type_, what) for row in data]


# ----------------------------------------------------------------------------------- money


def to_minor(value: Num | None, exchange: str, what: str, exact: bool = True) -> int:
    """A rupee amount as Angel writes it, in minor units; "" and None are 0.

    With `exact`, an amount finer than the minor unit is refused (prices, fills); without, it
    is rounded half-even (averages).
    """
    if value is None or value == "":
        return 0
    try:
        amount = (Decimal(str(value)) * price_scale(exchange)).normalize()
    except InvalidOperation:
        raise WireFormatError(f"{what}: {value!r} is not a number") from None
    if not amount.is_finite():
        raise WireFormatError(f"{what}: {value!r} is not a finite number")
    whole = amount.to_integral_value(rounding=ROUND_HALF_EVEN)
    if exact and whole != amount:
        raise WireFormatError(f"{what}: {value!r} is finer than the exchange's minor unit")
    return int(whole)


def to_rupees(minor: int, exchange: str) -> str:
    """Minor units as the exact decimal rupee string Angel accepts ("1234.50")."""
    scale = price_scale(exchange)
    places = len(str(scale)) - 1
    return str((Decimal(minor) / scale).quantize(Decimal(1).scaleb(-places)))


def to_int(value: Num | None, what: str) -> int:
    if value is None or value == "":
        return 0
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise WireFormatError(f"{what}: {value!r} is not a number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise WireFormatError(f"{what}: {value!r} is not a whole number")
    return int(number)


def split_key(instrument: str) -> tuple[str, str]:
    exchange, sep, token = instrument.partition(":")
    if not sep or not exchange or not token:
        raise ValueError(f"instrument {instrument!r} is not 'EXCH:token'")
    return exchange, token


# ----------------------------------------------------------------------------------- orders


class PlaceOrderParams(msgspec.Struct, kw_only=True):
    """placeOrder's body."""

    variety: str
    tradingsymbol: str
    symboltoken: str
    transactiontype: str
    exchange: str
    ordertype: str
    producttype: str
    duration: str
    quantity: str
    price: str = "0"
    triggerprice: str = "0"
    squareoff: str = "0"
    stoploss: str = "0"
    ordertag: str = ""

    @classmethod
    def from_order(cls, order: OrderRequest, tradingsymbol: str) -> PlaceOrderParams:
        """The broker's body for one of our orders (`tradingsymbol` from the catalog)."""
        exchange, token = split_key(order.instrument)
        if order.quantity <= 0:
            raise ValueError(
                f"order {order.client_order_id}: quantity must be positive, got {order.quantity}"
            )
        if len(order.tag) > MAX_ORDER_TAG_LEN:
            raise ValueError(
                f"order {order.client_order_id}: tag {order.tag!r} is longer than Angel's "
                f"{MAX_ORDER_TAG_LEN} characters"
            )
        stop = order.order_type in (OrderType.SL, OrderType.SL_M)
        priced = order.order_type in (OrderType.LIMIT, OrderType.SL)
        if priced and order.price <= 0:
            raise ValueError(f"order {order.client_order_id}: a {order.order_type} order needs a price")
        if stop and order.trigger_price <= 0:
            raise ValueError(
                f"order {order.client_order_id}: a {order.order_type} order needs a trigger price"
            )
        return cls(
            variety=Variety.STOPLOSS if stop else Variety.NORMAL,
            tradingsymbol=tradingsymbol,
            symboltoken=token,
            transactiontype=order.side.value,
            exchange=exchange,
            ordertype=ANGEL_ORDER_TYPE[order.order_type],
            producttype=order.product.value,
            duration=order.validity.value,
            quantity=str(order.quantity),
            price=to_rupees(order.price, exchange) if priced else "0",
            triggerprice=to_rupees(order.trigger_price, exchange) if stop else "0",
            ordertag=order.tag,
        )


class ModifyOrderParams(msgspec.Struct, kw_only=True):
    """modifyOrder's body: Angel wants the whole order restated, not just what changes."""

    variety: str
    orderid: str
    ordertype: str
    producttype: str
    duration: str
    price: str
    quantity: str
    tradingsymbol: str
    symboltoken: str
    exchange: str
    triggerprice: str = "0"


class OrderIdData(msgspec.Struct):
    """placeOrder / modifyOrder / cancelOrder answer."""

    orderid: str
    uniqueorderid: str = ""
    script: str = ""


# Order book `status` text → our status (before looking at the filled quantity).
_STATUS_BY_TEXT = {
    "complete": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
    "trigger pending": OrderStatus.TRIGGER_PENDING,
    "open": OrderStatus.OPEN,
    "modified": OrderStatus.OPEN,
    "modify pending": OrderStatus.OPEN,
    "modify validation pending": OrderStatus.OPEN,
    "not modified": OrderStatus.OPEN,
    "cancel pending": OrderStatus.OPEN,
    "not cancelled": OrderStatus.OPEN,
    "after market order req received": OrderStatus.OPEN,
    "open pending": OrderStatus.PENDING,
    "validation pending": OrderStatus.PENDING,
    "put order req received": OrderStatus.PENDING,
}

# Order-update socket status codes → our status (AB00 is the connection greeting, no order).
STATUS_BY_UPDATE_CODE = {
    "AB01": OrderStatus.OPEN,
    "AB02": OrderStatus.CANCELLED,
    "AB03": OrderStatus.REJECTED,
    "AB04": OrderStatus.OPEN,  # modified
    "AB05": OrderStatus.FILLED,
    "AB06": OrderStatus.OPEN,  # after-market order received
    "AB07": OrderStatus.CANCELLED,  # after-market order cancelled
    "AB08": OrderStatus.OPEN,  # after-market order modified
    "AB09": OrderStatus.PENDING,  # open pending
    "AB10": OrderStatus.TRIGGER_PENDING,
    "AB11": OrderStatus.OPEN,  # modify pending
}


class BrokerOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the broker reports it, in our units and enums."""

    venue_order_id: str
    unique_order_id: str
    instrument: str  # "EXCH:token"
    tradingsymbol: str
    side: Side
    order_type: OrderType
    product: str
    variety: str
    status: OrderStatus
    quantity: int
    filled_quantity: int
    price: int  # minor units
    trigger_price: int
    avg_price: int
    tag: str
    reason: str  # the broker's text, e.g. why it was rejected
    status_text: str


class OrderRow(msgspec.Struct, kw_only=True):
    """One order book row; also the `orderData` of an order-update message."""

    orderid: str = ""
    uniqueorderid: str = ""
    variety: str = ""
    ordertype: str = ""
    producttype: str = ""
    duration: str = ""
    price: Num = 0
    triggerprice: Num = 0
    quantity: Num = 0
    tradingsymbol: str = ""
    transactiontype: str = ""
    exchange: str = ""
    symboltoken: str = ""
    ordertag: str = ""
    averageprice: Num = 0
    filledshares: Num = 0
    unfilledshares: Num = 0
    text: str = ""
    status: str = ""
    orderstatus: str = ""
    updatetime: str = ""

    def parse_to_order(self, update_code: str | None = None) -> BrokerOrder:
        """Our view of the row; `update_code` (AB01...) from the socket wins over the status text."""
        exchange = self.exchange
        what = f"order {self.orderid}"
        status_text = (self.orderstatus or self.status).strip().lower()
        if update_code is not None and update_code in STATUS_BY_UPDATE_CODE:
            status = STATUS_BY_UPDATE_CODE[update_code]
        else:
            status = _STATUS_BY_TEXT.get(status_text, OrderStatus.PENDING)
        filled = to_int(self.filledshares, f"{what} filledshares")
        if status is OrderStatus.OPEN and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        try:
            side = Side(self.transactiontype.upper())
            order_type = ORDER_TYPE_BY_ANGEL[self.ordertype.upper()]
        except (ValueError, KeyError):
            raise WireFormatError(
                f"{what}: unknown transactiontype {self.transactiontype!r} or ordertype {self.ordertype!r}"
            ) from None
        return BrokerOrder(
            venue_order_id=self.orderid,
            unique_order_id=self.uniqueorderid,
            instrument=f"{exchange}:{self.symboltoken}",
            tradingsymbol=self.tradingsymbol,
            side=side,
            order_type=order_type,
            product=self.producttype,
            variety=self.variety,
            status=status,
            quantity=to_int(self.quantity, f"{what} quantity"),
            filled_quantity=filled,
            price=to_minor(self.price, exchange, f"{what} price"),
            trigger_price=to_minor(self.triggerprice, exchange, f"{what} triggerprice"),
            avg_price=to_minor(self.averageprice, exchange, f"{what} averageprice", exact=False),
            tag=self.ordertag,
            reason=self.text,
            status_text=status_text,
        )


class BrokerTrade(msgspec.Struct, frozen=True, kw_only=True):
    venue_order_id: str
    trade_id: str
    exchange: str
    tradingsymbol: str
    side: Side
    quantity: int
    price: int  # minor units
    product: str
    fill_time: str


class TradeRow(msgspec.Struct, kw_only=True):
    """One trade book row (Angel gives the symbol, not the token, here)."""

    orderid: str = ""
    fillid: str = ""
    exchange: str = ""
    tradingsymbol: str = ""
    transactiontype: str = ""
    fillsize: Num = 0
    fillprice: Num = 0
    producttype: str = ""
    filltime: str = ""

    def parse_to_trade(self) -> BrokerTrade:
        what = f"trade {self.fillid} of order {self.orderid}"
        try:
            side = Side(self.transactiontype.upper())
        except ValueError:
            raise WireFormatError(f"{what}: unknown transactiontype {self.transactiontype!r}") from None
        return BrokerTrade(
            venue_order_id=self.orderid,
            trade_id=self.fillid,
            exchange=self.exchange,
            tradingsymbol=self.tradingsymbol,
            side=side,
            quantity=to_int(self.fillsize, f"{what} fillsize"),
            price=to_minor(self.fillprice, self.exchange, f"{what} fillprice"),
            product=self.producttype,
            fill_time=self.filltime,
        )


class BrokerPosition(msgspec.Struct, frozen=True, kw_only=True):
    instrument: str
    tradingsymbol: str
    product: str
    net_quantity: int
    buy_quantity: int
    sell_quantity: int
    buy_avg_price: int  # minor units, rounded
    sell_avg_price: int
    ltp: int
    pnl: int  # minor units


class PositionRow(msgspec.Struct, kw_only=True):
    exchange: str = ""
    symboltoken: str = ""
    tradingsymbol: str = ""
    producttype: str = ""
    netqty: Num = 0
    buyqty: Num = 0
    sellqty: Num = 0
    buyavgprice: Num = 0
    sellavgprice: Num = 0
    ltp: Num = 0
    pnl: Num = 0

    def parse_to_position(self) -> BrokerPosition:
        exchange = self.exchange
        what = f"position {self.exchange}:{self.symboltoken} {self.producttype}"
        return BrokerPosition(
            instrument=f"{exchange}:{self.symboltoken}",
            tradingsymbol=self.tradingsymbol,
            product=self.producttype,
            net_quantity=to_int(self.netqty, f"{what} netqty"),
            buy_quantity=to_int(self.buyqty, f"{what} buyqty"),
            sell_quantity=to_int(self.sellqty, f"{what} sellqty"),
            buy_avg_price=to_minor(self.buyavgprice, exchange, f"{what} buyavgprice", exact=False),
            sell_avg_price=to_minor(self.sellavgprice, exchange, f"{what} sellavgprice", exact=False),
            ltp=to_minor(self.ltp, exchange, f"{what} ltp"),
            pnl=to_minor(self.pnl, exchange, f"{what} pnl", exact=False),
        )


# ----------------------------------------------------------------------------------- market data


class LtpRow(msgspec.Struct, kw_only=True):
    """getLtpData answer."""

    exchange: str
    symboltoken: str
    tradingsymbol: str = ""
    ltp: Num = 0
    open: Num = 0
    high: Num = 0
    low: Num = 0
    close: Num = 0

    def parse_to_ltp(self) -> int:
        return to_minor(self.ltp, self.exchange, f"ltp of {self.exchange}:{self.symboltoken}")


class DepthLevelRow(msgspec.Struct):
    price: Num = 0
    quantity: Num = 0
    orders: Num = 0


class DepthRow(msgspec.Struct):
    buy: list[DepthLevelRow] = msgspec.field(default_factory=list)
    sell: list[DepthLevelRow] = msgspec.field(default_factory=list)


class BrokerQuote(msgspec.Struct, frozen=True, kw_only=True):
    instrument: str
    tradingsymbol: str
    ltp: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    oi: int
    upper_circuit: int
    lower_circuit: int
    bids: list[tuple[int, int, int]]  # (price, quantity, orders), best first
    asks: list[tuple[int, int, int]]


class QuoteRow(msgspec.Struct, kw_only=True):
    """One `fetched` row of the quote API (modes LTP, OHLC, FULL; absent fields are 0)."""

    exchange: str
    symbolToken: str
    tradingSymbol: str = ""
    ltp: Num = 0
    open: Num = 0
    high: Num = 0
    low: Num = 0
    close: Num = 0
    tradeVolume: Num = 0
    opnInterest: Num = 0
    upperCircuit: Num = 0
    lowerCircuit: Num = 0
    depth: DepthRow | None = None

    def parse_to_quote(self) -> BrokerQuote:
        exchange = self.exchange
        what = f"quote of {exchange}:{self.symbolToken}"

        def minor(value: Num, field: str) -> int:
            return to_minor(value, exchange, f"{what} {field}")

        def levels(rows: list[DepthLevelRow], side: str) -> list[tuple[int, int, int]]:
            return [
                (
                    minor(r.price, f"{side} price"),
                    to_int(r.quantity, f"{what} {side} quantity"),
                    to_int(r.orders, f"{what} {side} orders"),
                )
                for r in rows
            ]

        depth = self.depth or DepthRow()
        return BrokerQuote(
            instrument=f"{exchange}:{self.symbolToken}",
            tradingsymbol=self.tradingSymbol,
            ltp=minor(self.ltp, "ltp"),
            open=minor(self.open, "open"),
            high=minor(self.high, "high"),
            low=minor(self.low, "low"),
            close=minor(self.close, "close"),
            volume=to_int(self.tradeVolume, f"{what} tradeVolume"),
            oi=to_int(self.opnInterest, f"{what} opnInterest"),
            upper_circuit=minor(self.upperCircuit, "upperCircuit"),
            lower_circuit=minor(self.lowerCircuit, "lowerCircuit"),
            bids=levels(depth.buy, "buy"),
            asks=levels(depth.sell, "sell"),
        )


class QuoteData(msgspec.Struct):
    fetched: list[QuoteRow] = msgspec.field(default_factory=list)
    unfetched: list[dict[str, Any]] = msgspec.field(default_factory=list)


class Candle(msgspec.Struct, frozen=True):
    ts_ns: int  # bar open time, epoch nanoseconds
    open: int  # minor units
    high: int
    low: int
    close: int
    volume: int


def parse_to_candles(rows: Any, exchange: str) -> list[Candle]:
    """getCandleData's `data`: rows of [ISO time with offset, open, high, low, close, volume]."""
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise WireFormatError(f"candles: expected a list of rows, got {type(rows).__name__}")
    candles = []
    for row in rows:
        if not isinstance(row, list | tuple) or len(row) < 6:
            raise WireFormatError(f"candles: row {row!r} is not [time, open, high, low, close, volume]")
        try:
            stamp = datetime.fromisoformat(str(row[0]))
        except ValueError:
            raise WireFormatError(f"candles: {row[0]!r} is not an ISO timestamp") from None
        if stamp.tzinfo is None:
            raise WireFormatError(f"candles: {row[0]!r} has no UTC offset")
        what = f"candle {row[0]}"
        ts_ns = int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000
        open_, high, low, close = (to_minor(v, exchange, f"{what} price") for v in row[1:5])
        candles.append(Candle(ts_ns, open_, high, low, close, to_int(row[5], f"{what} volume")))
    return candles


# ----------------------------------------------------------------------------------- GTT


class GttRuleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A GTT rule to create: when LTP crosses `trigger_price`, place a limit order at `price`."""

    instrument: str  # "EXCH:token", NSE or BSE only
    tradingsymbol: str
    side: Side
    product: Product  # DELIVERY or MARGIN only
    quantity: int
    price: int  # minor units
    trigger_price: int
    disclosed_quantity: int = 0
    time_period_days: int = 365

    def __post_init__(self) -> None:
        exchange, _ = split_key(self.instrument)
        if exchange not in GTT_EXCHANGES:
            raise ValueError(f"GTT rules exist for NSE and BSE cash only, not {exchange} ({self.instrument})")
        if self.product.value not in GTT_PRODUCTS:
            raise ValueError(f"GTT rules take DELIVERY or MARGIN, not {self.product.value}")
        if self.quantity <= 0 or self.price <= 0 or self.trigger_price <= 0:
            raise ValueError("GTT quantity, price and trigger price must be positive")


class GttCreateParams(msgspec.Struct, kw_only=True):
    tradingsymbol: str
    symboltoken: str
    exchange: str
    transactiontype: str
    producttype: str
    price: str
    qty: str
    triggerprice: str
    disclosedqty: str = "0"
    timeperiod: str = "365"

    @classmethod
    def from_spec(cls, spec: GttRuleSpec) -> GttCreateParams:
        exchange, token = split_key(spec.instrument)
        return cls(
            tradingsymbol=spec.tradingsymbol,
            symboltoken=token,
            exchange=exchange,
            transactiontype=spec.side.value,
            producttype=spec.product.value,
            price=to_rupees(spec.price, exchange),
            qty=str(spec.quantity),
            triggerprice=to_rupees(spec.trigger_price, exchange),
            disclosedqty=str(spec.disclosed_quantity),
            timeperiod=str(spec.time_period_days),
        )


class GttModifyParams(msgspec.Struct, kw_only=True):
    id: str
    symboltoken: str
    exchange: str
    price: str
    qty: str
    triggerprice: str
    disclosedqty: str = "0"
    timeperiod: str = "365"


class GttIdData(msgspec.Struct):
    id: Num


class BrokerGttRule(msgspec.Struct, frozen=True, kw_only=True):
    rule_id: str
    instrument: str
    tradingsymbol: str
    side: Side
    product: str
    quantity: int
    price: int  # minor units
    trigger_price: int
    status: str
    created: str
    updated: str


class GttRuleRow(msgspec.Struct, kw_only=True):
    id: Num
    tradingsymbol: str = ""
    symboltoken: str = ""
    exchange: str = ""
    transactiontype: str = ""
    producttype: str = ""
    price: Num = 0
    qty: Num = 0
    triggerprice: Num = 0
    status: str = ""
    createddate: str = ""
    updateddate: str = ""

    def parse_to_rule(self) -> BrokerGttRule:
        what = f"GTT rule {self.id}"
        try:
            side = Side(self.transactiontype.upper())
        except ValueError:
            raise WireFormatError(f"{what}: unknown transactiontype {self.transactiontype!r}") from None
        return BrokerGttRule(
            rule_id=str(self.id),
            instrument=f"{self.exchange}:{self.symboltoken}",
            tradingsymbol=self.tradingsymbol,
            side=side,
            product=self.producttype,
            quantity=to_int(self.qty, f"{what} qty"),
            price=to_minor(self.price, self.exchange, f"{what} price"),
            trigger_price=to_minor(self.triggerprice, self.exchange, f"{what} triggerprice"),
            status=self.status,
            created=self.createddate,
            updated=self.updateddate,
        )


# ----------------------------------------------------------------------------------- order updates


class OrderUpdateMessage(msgspec.Struct, kw_only=True):
    """One order-update socket message."""

    user_id: str = msgspec.field(default="", name="user-id")
    status_code: str = msgspec.field(default="", name="status-code")
    order_status: str = msgspec.field(default="", name="order-status")
    error_message: str = msgspec.field(default="", name="error-message")
    orderData: OrderRow | None = None

    def parse_to_order(self) -> BrokerOrder | None:
        """The order's new state, or None for messages about no order (AB00 greeting)."""
        if self.order_status == "AB00" or self.orderData is None or not self.orderData.orderid:
            return None
        order = self.orderData.parse_to_order(self.order_status)
        if self.error_message and not order.reason:
            order = msgspec.structs.replace(order, reason=self.error_message)
        return order
