"""The simulated broker account: Angel-format orders, trades, positions and GTT rules.

It turns SmartAPI order parameters into matching-engine orders, keeps the order book, trade book
and positions the REST routes return (field names and value shapes as Angel's), and reports each
order change as an order-update message (AB01..AB11). Plain class, no I/O: timestamps come in.

Exchange-level refusals (tick, lot, circuit, market closed, unknown token) are accepted with an
order id and then shown as a rejected order with the reason in ``text``, as Angel does; malformed
requests are refused outright with an `AngelApiError`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import numpy as np

from actors.angel.common import GTT_EXCHANGES, GTT_PRODUCTS, MAX_ORDER_TAG_LEN, price_scale
from actors.orders import OrderRequest, OrderStatus, OrderType, Product, Side, Validity
from actors.sim.market import MarketModel
from actors.sim.market_hours import IST
from actors.sim.matching import (
    InstrumentRules,
    MatchEvent,
    MatchingEngine,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderTriggered,
)
from actors.sim.universe import SimInstrument

VARIETIES = frozenset({"NORMAL", "STOPLOSS", "AMO", "ROBO"})
ANGEL_TO_ORDER_TYPE = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "STOPLOSS_LIMIT": OrderType.SL,
    "STOPLOSS_MARKET": OrderType.SL_M,
}
ORDER_TYPE_TO_ANGEL = {v: k for k, v in ANGEL_TO_ORDER_TYPE.items()}
PRODUCTS = {"DELIVERY": Product.DELIVERY, "CARRYFORWARD": Product.CARRYFORWARD, "MARGIN": Product.MARGIN}
PRODUCTS |= {"INTRADAY": Product.INTRADAY}

# Order-update status codes.
AB_OPEN, AB_CANCELLED, AB_REJECTED, AB_MODIFIED, AB_COMPLETE = "AB01", "AB02", "AB03", "AB04", "AB05"
AB_TRIGGER_PENDING = "AB10"

OrderUpdateListener = Callable[[dict[str, Any]], None]
_T = TypeVar("_T")


class AngelApiError(Exception):
    """A request Angel would answer with ``status: false``; code and message as Angel's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def to_minor(value: Any, exchange: str, what: str) -> int:
    """A rupee amount as sent by a client ("194.50", 194.5, 0) in minor units, exactly."""
    if value in (None, ""):
        return 0
    try:
        amount = Decimal(str(value)) * price_scale(exchange)
    except InvalidOperation:
        raise AngelApiError("AB1007", f"{what} {value!r} is not a number") from None
    if amount != amount.to_integral_value() or amount < 0:
        raise AngelApiError("AB1007", f"{what} {value!r} has more decimals than the exchange allows")
    return int(amount)


def to_rupees(minor: int, exchange: str) -> float:
    """Minor units as the float rupees Angel's JSON carries (clients parse them with Decimal)."""
    return float(Decimal(minor) / price_scale(exchange))


def _ist_text(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).astimezone(IST).strftime("%d-%b-%Y %H:%M:%S")


@dataclass(slots=True)
class AngelOrder:
    """One order book row, kept in engine units and rendered in Angel's shape."""

    orderid: str
    uniqueorderid: str
    variety: str
    instrument: SimInstrument
    side: Side
    order_type: OrderType
    product: str
    duration: str
    quantity: int
    price: int
    trigger_price: int
    tag: str
    status: str = "open pending"
    text: str = ""
    filled: int = 0
    avg_price: int = 0
    update_ns: int = 0

    def row(self) -> dict[str, Any]:
        inst, exch = self.instrument, self.instrument.exchange
        return {
            "variety": self.variety,
            "ordertype": ORDER_TYPE_TO_ANGEL[self.order_type],
            "producttype": self.product,
            "duration": self.duration,
            "price": to_rupees(self.price, exch),
            "triggerprice": to_rupees(self.trigger_price, exch),
            "quantity": str(self.quantity),
            "disclosedquantity": "0",
            "squareoff": 0.0,
            "stoploss": 0.0,
            "trailingstoploss": 0.0,
            "tradingsymbol": inst.symbol,
            "transactiontype": self.side.value,
            "exchange": exch,
            "symboltoken": inst.token,
            "ordertag": self.tag,
            "instrumenttype": inst.instrument_type,
            "strikeprice": -1.0,
            "optiontype": "",
            "expirydate": "",
            "lotsize": str(inst.lot_size),
            "cancelsize": str(self.quantity - self.filled if self.status == "cancelled" else 0),
            "averageprice": to_rupees(self.avg_price, exch),
            "filledshares": str(self.filled),
            "unfilledshares": str(self.quantity - self.filled),
            "orderid": self.orderid,
            "text": self.text,
            "status": self.status,
            "orderstatus": self.status,
            "updatetime": _ist_text(self.update_ns),
            "exchtime": _ist_text(self.update_ns),
            "exchorderupdatetime": _ist_text(self.update_ns),
            "fillid": "",
            "filltime": "",
            "parentorderid": "",
            "uniqueorderid": self.uniqueorderid,
            "exchangeorderid": self.orderid,
        }


@dataclass(slots=True)
class GttRule:
    id: int
    instrument: SimInstrument
    side: Side
    product: str
    price: int
    quantity: int
    trigger_price: int
    disclosed_qty: int
    time_period: int
    fires_when_above: bool
    created_ns: int
    status: str = "NEW"
    updated_ns: int = 0
    orderid: str = ""

    def row(self) -> dict[str, Any]:
        inst, exch = self.instrument, self.instrument.exchange
        return {
            "id": str(self.id),
            "tradingsymbol": inst.symbol,
            "symboltoken": inst.token,
            "exchange": exch,
            "transactiontype": self.side.value,
            "producttype": self.product,
            "price": to_rupees(self.price, exch),
            "qty": str(self.quantity),
            "triggerprice": to_rupees(self.trigger_price, exch),
            "disclosedqty": str(self.disclosed_qty),
            "timeperiod": str(self.time_period),
            "status": self.status,
            "createddate": _ist_text(self.created_ns),
            "updateddate": _ist_text(self.updated_ns or self.created_ns),
            "expirydate": "",
            "clientid": "",
            "orderid": self.orderid,
        }


@dataclass(slots=True)
class Position:
    buy_qty: int = 0
    sell_qty: int = 0
    buy_value: int = 0  # minor units
    sell_value: int = 0


@dataclass(slots=True)
class SimExchange:
    """The simulated account's books over one market and one matching engine."""

    market: MarketModel
    client_code: str
    is_open: Callable[[int], bool]
    partial_fills: bool = False
    orders: dict[str, AngelOrder] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    gtt_rules: dict[int, GttRule] = field(default_factory=dict)
    listeners: list[OrderUpdateListener] = field(default_factory=list)
    engine: MatchingEngine = field(init=False)
    _rules: dict[str, InstrumentRules] = field(init=False)
    _order_seq: itertools.count[int] = field(init=False)
    _gtt_seq: itertools.count[int] = field(init=False)

    def __post_init__(self) -> None:
        m = self.market
        self._rules = {
            inst.key: InstrumentRules(
                inst.key,
                int(m.tick[i]),
                int(m.lot[i]),
                int(m.lower_circuit[i]),
                int(m.upper_circuit[i]),
                inst.symbol,
            )
            for i, inst in enumerate(m.instruments)
            if not inst.is_index
        }
        self.engine = MatchingEngine(self._rules.get, partial_fills=self.partial_fills, is_open=self.is_open)
        self._order_seq = itertools.count(1)
        self._gtt_seq = itertools.count(1)

    # ------------------------------------------------------------------------------- lookups

    def instrument(self, exchange: Any, token: Any) -> SimInstrument:
        index = self.market.index.get(f"{exchange}:{token}")
        if index is None:
            raise AngelApiError("AB1009", f"Symbol not found: no token {token!r} on {exchange!r}")
        return self.market.instruments[index]

    # ------------------------------------------------------------------------------- orders

    def place(self, params: dict[str, Any], ts_ns: int) -> str:
        """Place an order from SmartAPI parameters; return its order id."""
        variety = str(params.get("variety", "NORMAL")).upper()
        if variety not in VARIETIES:
            raise AngelApiError("AB1008", f"Invalid order variety {variety!r}")
        if variety == "ROBO":
            raise AngelApiError("AB2002", "ROBO (bracket) orders are blocked")
        exchange = str(params.get("exchange", ""))
        inst = self.instrument(exchange, params.get("symboltoken", ""))
        symbol = params.get("tradingsymbol")
        if symbol and symbol != inst.symbol:
            raise AngelApiError("AB1009", f"trading symbol {symbol!r} does not match token {inst.token}")
        side = _enum(params, "transactiontype", {"BUY": Side.BUY, "SELL": Side.SELL}, "AB1007")
        order_type = _enum(params, "ordertype", ANGEL_TO_ORDER_TYPE, "AB1007")
        product = str(params.get("producttype", ""))
        if product not in PRODUCTS:
            raise AngelApiError("AB1012", f"Invalid product type {product!r}")
        duration = str(params.get("duration", "DAY")).upper()
        if duration not in ("DAY", "IOC"):
            raise AngelApiError("AB1007", f"Invalid duration {duration!r}: DAY or IOC")
        tag = str(params.get("ordertag", "") or "")
        if len(tag) > MAX_ORDER_TAG_LEN:
            raise AngelApiError("AB4008", "ordertag length should be less than 20 characters")
        quantity = _int(params.get("quantity"), "quantity")
        price = to_minor(params.get("price"), exchange, "price")
        trigger = to_minor(params.get("triggerprice"), exchange, "trigger price")
        if order_type in (OrderType.SL, OrderType.SL_M) and variety != "STOPLOSS":
            raise AngelApiError("AB1008", "stop-loss orders need variety STOPLOSS")
        if order_type is OrderType.MARKET:
            price = 0

        orderid = self._next_order_id(ts_ns)
        order = AngelOrder(
            orderid,
            str(uuid.uuid5(uuid.NAMESPACE_OID, orderid)),
            variety,
            inst,
            side,
            order_type,
            product,
            duration,
            quantity,
            price,
            trigger,
            tag,
            update_ns=ts_ns,
        )
        self.orders[orderid] = order
        if inst.is_index:
            self._apply(
                [OrderRejected(orderid, inst.key, f"{inst.symbol} is an index and cannot be traded", ts_ns)]
            )
            return orderid
        request = OrderRequest(
            client_order_id=orderid,
            book=self.client_code,
            instrument=inst.key,
            side=side,
            quantity=quantity,
            order_type=order_type,
            product=PRODUCTS[product],
            validity=Validity(duration),
            price=price,
            trigger_price=trigger,
            tag=tag,
        )
        self._sync_quote(inst.key)
        self._apply(self.engine.submit(request, ts_ns))
        return orderid

    def modify(self, params: dict[str, Any], ts_ns: int) -> str:
        orderid = str(params.get("orderid", ""))
        order = self.orders.get(orderid)
        if order is None:
            raise AngelApiError("AB1013", f"Order not found: {orderid!r}")
        exch = order.instrument.exchange
        order_type = (
            _enum(params, "ordertype", ANGEL_TO_ORDER_TYPE, "AB1007") if "ordertype" in params else None
        )
        quantity = _int(params["quantity"], "quantity") if params.get("quantity") not in (None, "") else None
        price = to_minor(params["price"], exch, "price") if "price" in params else None
        trigger = (
            to_minor(params["triggerprice"], exch, "trigger price") if "triggerprice" in params else None
        )
        if order_type is OrderType.MARKET:
            price = 0
        self._sync_quote(order.instrument.key)
        events = self.engine.modify(
            orderid, ts_ns, quantity=quantity, price=price, trigger_price=trigger, order_type=order_type
        )
        if events and isinstance(events[0], OrderRejected):
            raise AngelApiError("AB1007", events[0].reason)
        self._apply(events)
        return orderid

    def cancel(self, orderid: str, ts_ns: int) -> str:
        if orderid not in self.orders:
            raise AngelApiError("AB1013", f"Order not found: {orderid!r}")
        events = self.engine.cancel(orderid, ts_ns)
        if events and isinstance(events[0], OrderRejected):
            raise AngelApiError("AB1007", events[0].reason)
        self._apply(events)
        return orderid

    def end_of_day(self, ts_ns: int) -> None:
        """The session closed: every working DAY order is cancelled (AB02)."""
        self._apply(self.engine.expire_day(ts_ns))

    def on_ticks(self, indices: np.ndarray, records: np.ndarray) -> None:
        """Feed new ticks to the engine, for instruments with working orders or GTT rules only."""
        watched = self.engine.active_keys() | {
            r.instrument.key for r in self.gtt_rules.values() if r.status == "NEW"
        }
        if not watched or len(indices) == 0:
            return
        wanted = np.array([self.market.index[k] for k in watched], dtype=np.int64)
        for pos in np.flatnonzero(np.isin(indices, wanted)).tolist():
            rec = records[pos]
            inst = self.market.instruments[int(indices[pos])]
            depth = rec["depth"]
            ts_ns = int(rec["ts_exchange_ms"]) * 1_000_000
            ltp = int(rec["ltp"])
            self._apply(
                self.engine.on_quote(
                    inst.key,
                    int(depth["price"][0]),
                    int(depth["price"][5]),
                    ltp,
                    ts_ns,
                    bid_qty=int(depth["qty"][0]),
                    ask_qty=int(depth["qty"][5]),
                )
            )
            self._check_gtt(inst, ltp, ts_ns)

    def _sync_quote(self, key: str) -> None:
        """Give the engine the market's current quote before acting on an order."""
        q = self.market.quote(self.market.index[key])
        self.engine.on_quote(key, q.bid, q.ask, q.ltp, q.ts_ms * 1_000_000, q.bid_qty, q.ask_qty)

    def _next_order_id(self, ts_ns: int) -> str:
        day = datetime.fromtimestamp(ts_ns / 1e9, UTC).astimezone(IST).strftime("%y%m%d")
        return f"{day}{next(self._order_seq):09d}"

    def _apply(self, events: list[MatchEvent]) -> None:
        for event in events:
            order = self.orders.get(event.order_id)
            if order is None:
                continue
            order.update_ns = event.ts_ns
            code = AB_OPEN
            if isinstance(event, OrderAccepted):
                if event.status is OrderStatus.TRIGGER_PENDING:
                    order.status, code = "trigger pending", AB_TRIGGER_PENDING
                else:
                    order.status = "open"
            elif isinstance(event, OrderTriggered):
                order.status = "open"
            elif isinstance(event, OrderRejected):
                order.status, order.text, code = "rejected", event.reason, AB_REJECTED
            elif isinstance(event, OrderCancelled):
                order.status, order.text, code = "cancelled", event.reason, AB_CANCELLED
            elif isinstance(event, OrderModified):
                order.quantity, order.price = event.quantity, event.price
                order.trigger_price, order.order_type = event.trigger_price, event.order_type
                code = AB_MODIFIED
            elif isinstance(event, OrderFilled):
                resting = self.engine.order(event.order_id)
                order.filled = event.filled_quantity
                order.avg_price = resting.avg_price if resting else event.price
                if event.leaves_quantity == 0:
                    order.status, code = "complete", AB_COMPLETE
                self._book_trade(order, event)
            self._publish(order, code)

    def _book_trade(self, order: AngelOrder, fill: OrderFilled) -> None:
        inst = order.instrument
        exch = inst.exchange
        self.trades.append(
            {
                "exchange": exch,
                "producttype": order.product,
                "tradingsymbol": inst.symbol,
                "instrumenttype": inst.instrument_type,
                "symbolgroup": "EQ" if not inst.is_derivative else "",
                "strikeprice": "-1",
                "optiontype": "",
                "expirydate": "",
                "marketlot": str(inst.lot_size),
                "precision": "2",
                "multiplier": "-1",
                "tradevalue": to_rupees(fill.quantity * fill.price, exch),
                "transactiontype": fill.side.value,
                "fillprice": to_rupees(fill.price, exch),
                "fillsize": str(fill.quantity),
                "orderid": order.orderid,
                "fillid": fill.trade_id,
                "filltime": datetime.fromtimestamp(fill.ts_ns / 1e9, UTC)
                .astimezone(IST)
                .strftime("%H:%M:%S"),
            }
        )
        pos = self.positions.setdefault((inst.key, order.product), Position())
        if fill.side is Side.BUY:
            pos.buy_qty += fill.quantity
            pos.buy_value += fill.quantity * fill.price
        else:
            pos.sell_qty += fill.quantity
            pos.sell_value += fill.quantity * fill.price

    def _publish(self, order: AngelOrder, code: str) -> None:
        if not self.listeners:
            return
        message = {
            "user-id": self.client_code,
            "status-code": "200",
            "order-status": code,
            "error-message": order.text if code == AB_REJECTED else "",
            "orderData": order.row(),
        }
        for listener in list(self.listeners):
            listener(message)

    # ------------------------------------------------------------------------------- books

    def order_book(self) -> list[dict[str, Any]]:
        return [o.row() for o in self.orders.values()]

    def trade_book(self) -> list[dict[str, Any]]:
        return list(self.trades)

    def position_rows(self) -> list[dict[str, Any]]:
        rows = []
        for (key, product), pos in self.positions.items():
            i = self.market.index[key]
            inst = self.market.instruments[i]
            exch = inst.exchange
            net_qty = pos.buy_qty - pos.sell_qty
            ltp = int(self.market.ltp[i])
            pnl = pos.sell_value - pos.buy_value + net_qty * ltp
            rows.append(
                {
                    "exchange": exch,
                    "symboltoken": inst.token,
                    "producttype": product,
                    "tradingsymbol": inst.symbol,
                    "symbolname": inst.symbol.split("-")[0],
                    "instrumenttype": inst.instrument_type,
                    "lotsize": str(inst.lot_size),
                    "buyqty": str(pos.buy_qty),
                    "sellqty": str(pos.sell_qty),
                    "buyamount": f"{to_rupees(pos.buy_value, exch):.2f}",
                    "sellamount": f"{to_rupees(pos.sell_value, exch):.2f}",
                    "buyavgprice": f"{_avg(pos.buy_value, pos.buy_qty, exch):.2f}",
                    "sellavgprice": f"{_avg(pos.sell_value, pos.sell_qty, exch):.2f}",
                    "netqty": str(net_qty),
                    "netvalue": f"{to_rupees(pos.sell_value - pos.buy_value, exch):.2f}",
                    "ltp": f"{to_rupees(ltp, exch):.2f}",
                    "pnl": f"{to_rupees(pnl, exch):.2f}",
                    "cfbuyqty": "0",
                    "cfsellqty": "0",
                }
            )
        return rows

    # ------------------------------------------------------------------------------- GTT

    def gtt_create(self, params: dict[str, Any], ts_ns: int) -> int:
        exchange = str(params.get("exchange", ""))
        if exchange not in GTT_EXCHANGES:
            raise AngelApiError("AB1007", f"GTT rules are for NSE and BSE cash only, not {exchange!r}")
        inst = self.instrument(exchange, params.get("symboltoken", ""))
        product = str(params.get("producttype", ""))
        if product not in GTT_PRODUCTS:
            raise AngelApiError("AB1012", f"GTT rules take DELIVERY or MARGIN, not {product!r}")
        side = _enum(params, "transactiontype", {"BUY": Side.BUY, "SELL": Side.SELL}, "AB1007")
        rule = GttRule(
            id=next(self._gtt_seq),
            instrument=inst,
            side=side,
            product=product,
            price=0,
            quantity=0,
            trigger_price=0,
            disclosed_qty=_int(params.get("disclosedqty", 0) or 0, "disclosedqty", allow_zero=True),
            time_period=_int(params.get("timeperiod", 365) or 365, "timeperiod"),
            fires_when_above=False,
            created_ns=ts_ns,
        )
        self._set_gtt_terms(rule, params)
        self.gtt_rules[rule.id] = rule
        return rule.id

    def gtt_modify(self, params: dict[str, Any], ts_ns: int) -> int:
        rule = self._gtt(params.get("id"))
        if rule.status != "NEW":
            raise AngelApiError("AB1007", f"GTT rule {rule.id} is {rule.status} and can no longer change")
        self._set_gtt_terms(rule, {**rule.row(), **params})
        rule.updated_ns = ts_ns
        return rule.id

    def gtt_cancel(self, params: dict[str, Any], ts_ns: int) -> int:
        rule = self._gtt(params.get("id"))
        if rule.status != "NEW":
            raise AngelApiError("AB1007", f"GTT rule {rule.id} is {rule.status} and cannot be cancelled")
        rule.status, rule.updated_ns = "CANCELLED", ts_ns
        return rule.id

    def gtt_details(self, rule_id: Any) -> dict[str, Any]:
        return self._gtt(rule_id).row()

    def gtt_list(self, statuses: list[str], page: int, count: int) -> list[dict[str, Any]]:
        wanted = {s.upper() for s in statuses}
        if "FORALL" in wanted:
            wanted = {"NEW", "CANCELLED", "ACTIVE", "SENTTOEXCHANGE"}
        rules = [r.row() for r in self.gtt_rules.values() if r.status in wanted]
        start = max(page - 1, 0) * count
        return rules[start : start + count]

    def _gtt(self, rule_id: Any) -> GttRule:
        try:
            rule = self.gtt_rules.get(int(rule_id))
        except (TypeError, ValueError):
            rule = None
        if rule is None:
            raise AngelApiError("AB1007", f"GTT rule {rule_id!r} not found")
        return rule

    def _set_gtt_terms(self, rule: GttRule, params: dict[str, Any]) -> None:
        inst, exch = rule.instrument, rule.instrument.exchange
        rules = self._rules[inst.key]
        price = to_minor(params.get("price"), exch, "price")
        trigger = to_minor(params.get("triggerprice"), exch, "trigger price")
        qty = _int(params.get("qty"), "qty")
        for what, value in (("price", price), ("trigger price", trigger)):
            if value <= 0 or value % rules.tick_size:
                raise AngelApiError(
                    "AB1007", f"GTT {what} must be a positive multiple of the tick size for {inst.symbol}"
                )
        if qty % rules.lot_size:
            raise AngelApiError(
                "AB1007", f"GTT quantity {qty} is not a multiple of the lot size {rules.lot_size}"
            )
        rule.price, rule.trigger_price, rule.quantity = price, trigger, qty
        rule.fires_when_above = trigger > int(self.market.ltp[self.market.index[inst.key]])

    def _check_gtt(self, inst: SimInstrument, ltp: int, ts_ns: int) -> None:
        for rule in list(self.gtt_rules.values()):
            if rule.status != "NEW" or rule.instrument.key != inst.key:
                continue
            reached = ltp >= rule.trigger_price if rule.fires_when_above else ltp <= rule.trigger_price
            if not reached:
                continue
            rule.status, rule.updated_ns = "SENTTOEXCHANGE", ts_ns
            rule.orderid = self.place(
                {
                    "variety": "NORMAL",
                    "exchange": inst.exchange,
                    "symboltoken": inst.token,
                    "transactiontype": rule.side.value,
                    "ordertype": "LIMIT",
                    "producttype": rule.product,
                    "duration": "DAY",
                    "price": str(Decimal(rule.price) / price_scale(inst.exchange)),
                    "quantity": rule.quantity,
                    "ordertag": f"gtt{rule.id}",
                },
                ts_ns,
            )


def _avg(value: int, qty: int, exchange: str) -> float:
    return to_rupees(value, exchange) / qty if qty else 0.0


def _int(value: Any, what: str, allow_zero: bool = False) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        raise AngelApiError("AB1007", f"{what} {value!r} is not a whole number") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise AngelApiError("AB1007", f"{what} must be positive, got {number}")
    return number


def _enum(params: dict[str, Any], name: str, choices: dict[str, _T], code: str) -> _T:
    value = str(params.get(name, "")).upper()
    if value not in choices:
        raise AngelApiError(
            code, f"Invalid {name} {params.get(name)!r}: expected one of {', '.join(choices)}"
        )
    return choices[value]
