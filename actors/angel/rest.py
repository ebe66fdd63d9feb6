"""Typed SmartAPI REST calls over the real SDK: orders, books, market data, candles, GTT rules.

Every call goes through the same path: wait for the endpoint group's rate limit (cancels and
exits first), make sure the session is fresh, run the SDK call off the event loop, and parse the
answer into our units. A refused token renews the session and retries the call once; a broker
rate-limit refusal pauses the group and retries without losing the request; reads also retry a
transient failure. Writes never retry an ambiguous failure (a timeout on placeOrder may have
placed it): that surfaces to the caller, who reconciles against the order book.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from actors.angel.common import (
    CANDLE_MAX_DAYS,
    CANDLE_TIME_FORMAT,
    MAX_QUOTE_TOKENS,
    CandleInterval,
    EndpointGroup,
    GttStatus,
    Variety,
)
from actors.angel.errors import BrokerResponseError, RateLimitedError, TokenError, TransientBrokerError
from actors.angel.limits import Priority, RateLimiter
from actors.angel.schemas import (
    BrokerGttRule,
    BrokerOrder,
    BrokerPosition,
    BrokerQuote,
    BrokerTrade,
    Candle,
    GttCreateParams,
    GttIdData,
    GttModifyParams,
    GttRuleRow,
    GttRuleSpec,
    LtpRow,
    ModifyOrderParams,
    OrderIdData,
    OrderRow,
    PlaceOrderParams,
    PositionRow,
    QuoteData,
    TradeRow,
    WireFormatError,
    convert,
    convert_rows,
    parse_to_candles,
    split_key,
    to_rupees,
)
from actors.orders import ANGEL_ORDER_TYPE, OrderRequest

if TYPE_CHECKING:
    from actors.angel.auth import AngelAuth
    from actors.angel.sdk import SmartApiGateway

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class RetryPolicy(msgspec.Struct, frozen=True):
    """How hard to try again. Rate-limit refusals are always safe to retry (nothing happened)."""

    rate_limit_retries: int = 8
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    transient_retries: int = 2  # reads only

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with full jitter for the `attempt`-th retry (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def candle_windows(
    start: datetime, end: datetime, interval: CandleInterval
) -> list[tuple[datetime, datetime]]:
    """[start, end] cut into request windows no longer than Angel allows for `interval`.

    Windows share no minute: each starts one minute after the previous one ended.
    """
    if end < start:
        raise ValueError(
            f"candle range ends ({end:%Y-%m-%d %H:%M}) before it starts ({start:%Y-%m-%d %H:%M})"
        )
    span = timedelta(days=CANDLE_MAX_DAYS[interval])
    windows = []
    cursor = start
    while cursor <= end:
        stop = min(cursor + span, end)
        windows.append((cursor, stop))
        cursor = stop + timedelta(minutes=1)
    return windows


class AngelRestClient:
    """The SmartAPI REST calls shardline makes, typed and rate limited.

    Parameters
    ----------
    gateway : SmartApiGateway
        The SDK, off the event loop.
    auth : AngelAuth
        Keeps the session fresh.
    limiter : RateLimiter
        Angel's rate limits, shared with `auth`.
    retry : RetryPolicy
        Back-off settings.
    """

    def __init__(
        self,
        gateway: SmartApiGateway,
        auth: AngelAuth,
        limiter: RateLimiter,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.gateway = gateway
        self.auth = auth
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.retries: dict[str, int] = {"token": 0, "rate_limit": 0, "transient": 0}

    async def close(self) -> None:
        await self.limiter.close()
        await self.gateway.close()

    # ------------------------------------------------------------------------------- plumbing

    async def _call(
        self,
        operation: str,
        group: EndpointGroup,
        priority: Priority,
        invoke: Callable[[], Awaitable[Any]],
        parse: Callable[[Any], _T],
        *,
        read_only: bool,
    ) -> _T:
        token_retried = False
        rate_limited = transient = 0
        while True:
            await self.limiter.acquire(group, priority)
            session = await self.auth.ensure_session()
            try:
                data = await invoke()
            except TokenError:
                if token_retried:
                    raise
                token_retried = True
                self.retries["token"] += 1
                log.info("%s: token refused; renewing the session and retrying once", operation)
                await self.auth.renew(session)
                continue
            except RateLimitedError:
                rate_limited += 1
                if rate_limited > self.retry.rate_limit_retries:
                    raise
                self.retries["rate_limit"] += 1
                self.limiter.back_off(group, self.retry.backoff(rate_limited))
                continue
            except TransientBrokerError as err:
                transient += 1
                if not read_only or transient > self.retry.transient_retries:
                    raise
                self.retries["transient"] += 1
                pause = self.retry.backoff(transient)
                log.warning("%s: %s; retrying in %.2f s", operation, err, pause)
                await asyncio.sleep(pause)
                continue
            try:
                return parse(data)
            except WireFormatError as err:
                raise BrokerResponseError(operation, "", str(err)) from None

    # ------------------------------------------------------------------------------- orders

    async def place_order(self, order: OrderRequest, tradingsymbol: str) -> OrderIdData:
        """Place `order`; exits go ahead of entries. Returns the broker's order ids."""
        params = msgspec.to_builtins(PlaceOrderParams.from_order(order, tradingsymbol))
        priority = Priority.URGENT if order.is_exit else Priority.NORMAL
        return await self._call(
            f"placeOrder {order.client_order_id}",
            EndpointGroup.ORDERS,
            priority,
            lambda: self.gateway.call("placeOrder", "placeOrderFullResponse", dict(params)),
            lambda data: convert(data, OrderIdData, "placeOrder answer"),
            read_only=False,
        )

    async def modify_order(self, params: ModifyOrderParams, *, urgent: bool = False) -> OrderIdData:
        """Restate an open order with new terms (Angel wants every field, not just the change)."""
        body = msgspec.to_builtins(params)
        return await self._call(
            f"modifyOrder {params.orderid}",
            EndpointGroup.ORDERS,
            Priority.URGENT if urgent else Priority.NORMAL,
            lambda: self.gateway.call("modifyOrder", "modifyOrder", dict(body)),
            lambda data: convert(data, OrderIdData, "modifyOrder answer"),
            read_only=False,
        )

    @staticmethod
    def modify_params(current: BrokerOrder, order: OrderRequest) -> ModifyOrderParams:
        """The modifyOrder body that gives broker order `current` the terms of `order`."""
        exchange, token = split_key(current.instrument)
        return ModifyOrderParams(
            variety=current.variety or Variety.NORMAL,
            orderid=current.venue_order_id,
            ordertype=ANGEL_ORDER_TYPE[order.order_type],
            producttype=order.product.value,
            duration=order.validity.value,
            price=to_rupees(order.price, exchange),
            quantity=str(order.quantity),
            tradingsymbol=current.tradingsymbol,
            symboltoken=token,
            exchange=exchange,
            triggerprice=to_rupees(order.trigger_price, exchange),
        )

    async def cancel_order(self, venue_order_id: str, variety: str = Variety.NORMAL) -> OrderIdData:
        """Cancel an order; cancels go ahead of every queued entry."""
        return await self._call(
            f"cancelOrder {venue_order_id}",
            EndpointGroup.ORDERS,
            Priority.URGENT,
            lambda: self.gateway.call("cancelOrder", "cancelOrder", venue_order_id, str(variety)),
            lambda data: convert(data, OrderIdData, "cancelOrder answer"),
            read_only=False,
        )

    async def order_book(self) -> list[BrokerOrder]:
        return await self._call(
            "getOrderBook",
            EndpointGroup.BOOKS,
            Priority.NORMAL,
            lambda: self.gateway.call("getOrderBook", "orderBook"),
            lambda data: [row.parse_to_order() for row in convert_rows(data, OrderRow, "order book row")],
            read_only=True,
        )

    async def trade_book(self) -> list[BrokerTrade]:
        return await self._call(
            "getTradeBook",
            EndpointGroup.BOOKS,
            Priority.NORMAL,
            lambda: self.gateway.call("getTradeBook", "tradeBook"),
            lambda data: [row.parse_to_trade() for row in convert_rows(data, TradeRow, "trade book row")],
            read_only=True,
        )

    async def positions(self) -> list[BrokerPosition]:
        return await self._call(
            "getPosition",
            EndpointGroup.BOOKS,
            Priority.NORMAL,
            lambda: self.gateway.call("getPosition", "position"),
            lambda data: [row.parse_to_position() for row in convert_rows(data, PositionRow, "position row")],
            read_only=True,
        )

    # ------------------------------------------------------------------------------- market data

    async def ltp(self, instrument: str, tradingsymbol: str) -> int:
        """Last traded price in minor units."""
        exchange, token = split_key(instrument)
        return await self._call(
            f"getLtpData {instrument}",
            EndpointGroup.MARKET_DATA,
            Priority.NORMAL,
            lambda: self.gateway.call("getLtpData", "ltpData", exchange, tradingsymbol, token),
            lambda data: convert(data, LtpRow, "getLtpData answer").parse_to_ltp(),
            read_only=True,
        )

    async def quote(self, instruments: Sequence[str], mode: str = "FULL") -> list[BrokerQuote]:
        """Quotes in the order asked for (fetched in chunks of 50, Angel's cap); ones the broker
        could not fetch are left out (and logged)."""
        if mode not in ("LTP", "OHLC", "FULL"):
            raise ValueError(f"quote mode must be LTP, OHLC or FULL, not {mode!r}")
        quotes: list[BrokerQuote] = []
        for start in range(0, len(instruments), MAX_QUOTE_TOKENS):
            by_exchange: dict[str, list[str]] = {}
            for key in instruments[start : start + MAX_QUOTE_TOKENS]:
                exchange, token = split_key(key)
                by_exchange.setdefault(exchange, []).append(token)
            quotes += await self._call(
                f"quote ({len(instruments[start : start + MAX_QUOTE_TOKENS])} tokens)",
                EndpointGroup.MARKET_DATA,
                Priority.NORMAL,
                functools.partial(self.gateway.call, "quote", "getMarketData", mode, by_exchange),
                self._parse_quotes,
                read_only=True,
            )
        by_key = {q.instrument: q for q in quotes}
        return [by_key[key] for key in dict.fromkeys(instruments) if key in by_key]

    @staticmethod
    def _parse_quotes(data: Any) -> list[BrokerQuote]:
        answer = convert(data, QuoteData, "quote answer")
        for missing in answer.unfetched:
            log.warning("quote: broker could not fetch %s", missing)
        return [row.parse_to_quote() for row in answer.fetched]

    async def candles(
        self, instrument: str, interval: CandleInterval, start: datetime, end: datetime
    ) -> list[Candle]:
        """Bars over [start, end] (exchange-local naive times, as Angel takes them), in time order.

        Long ranges are fetched in windows of at most Angel's max days for the interval.
        """
        exchange, token = split_key(instrument)
        bars: dict[int, Candle] = {}
        for window_start, window_end in candle_windows(start, end, interval):
            params = {
                "exchange": exchange,
                "symboltoken": token,
                "interval": interval.value,
                "fromdate": window_start.strftime(CANDLE_TIME_FORMAT),
                "todate": window_end.strftime(CANDLE_TIME_FORMAT),
            }
            chunk = await self._call(
                f"getCandleData {instrument} {params['fromdate']}..{params['todate']}",
                EndpointGroup.CANDLES,
                Priority.NORMAL,
                functools.partial(self.gateway.call, "getCandleData", "getCandleData", params),
                lambda data: parse_to_candles(data, exchange),
                read_only=True,
            )
            for bar in chunk:
                bars[bar.ts_ns] = bar  # windows meet at a boundary minute; keep one bar per time
        return [bars[ts] for ts in sorted(bars)]

    # ------------------------------------------------------------------------------- GTT

    async def create_gtt(self, spec: GttRuleSpec) -> str:
        """Create a GTT rule; returns its id."""
        body = msgspec.to_builtins(GttCreateParams.from_spec(spec))
        return await self._call(
            f"GTT createRule {spec.instrument}",
            EndpointGroup.MARKET_DATA,
            Priority.NORMAL,
            lambda: self.gateway.post("GTT createRule", "api.gtt.create", dict(body)),
            lambda data: str(convert(data, GttIdData, "GTT createRule answer").id),
            read_only=False,
        )

    async def modify_gtt(self, rule_id: str, spec: GttRuleSpec) -> str:
        create = GttCreateParams.from_spec(spec)
        body = msgspec.to_builtins(
            GttModifyParams(
                id=str(rule_id),
                symboltoken=create.symboltoken,
                exchange=create.exchange,
                price=create.price,
                qty=create.qty,
                triggerprice=create.triggerprice,
                disclosedqty=create.disclosedqty,
                timeperiod=create.timeperiod,
            )
        )
        return await self._call(
            f"GTT modifyRule {rule_id}",
            EndpointGroup.MARKET_DATA,
            Priority.NORMAL,
            lambda: self.gateway.post("GTT modifyRule", "api.gtt.modify", dict(body)),
            lambda data: str(convert(data, GttIdData, "GTT modifyRule answer").id),
            read_only=False,
        )

    async def cancel_gtt(self, rule_id: str, instrument: str) -> str:
        exchange, token = split_key(instrument)
        body = {"id": str(rule_id), "symboltoken": token, "exchange": exchange}
        return await self._call(
            f"GTT cancelRule {rule_id}",
            EndpointGroup.MARKET_DATA,
            Priority.URGENT,
            lambda: self.gateway.call("GTT cancelRule", "gttCancelRule", dict(body)),
            lambda data: str(convert(data, GttIdData, "GTT cancelRule answer").id),
            read_only=False,
        )

    async def gtt_details(self, rule_id: str) -> BrokerGttRule:
        return await self._call(
            f"GTT ruleDetails {rule_id}",
            EndpointGroup.MARKET_DATA,
            Priority.NORMAL,
            lambda: self.gateway.call("GTT ruleDetails", "gttDetails", str(rule_id)),
            lambda data: convert(data, GttRuleRow, "GTT rule").parse_to_rule(),
            read_only=True,
        )

    async def gtt_list(
        self, statuses: Sequence[GttStatus] = (GttStatus.FORALL,), page: int = 1, count: int = 50
    ) -> list[BrokerGttRule]:
        wanted = [GttStatus(s).value for s in statuses]
        return await self._call(
            "GTT ruleList",
            EndpointGroup.MARKET_DATA,
            Priority.NORMAL,
            lambda: self.gateway.call("GTT ruleList", "gttLists", wanted, page, count),
            lambda data: [row.parse_to_rule() for row in convert_rows(data, GttRuleRow, "GTT rule")],
            read_only=True,
        )
