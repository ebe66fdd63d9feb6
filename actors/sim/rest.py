"""The SmartAPI REST routes of the simulator, answering in Angel's envelope.

Every answer is ``{"status", "message", "errorcode", "data"}``. Each call is checked the way the
broker checks it, in this order: the API key header, the user type, the rate limit of its
endpoint group (answered, as Angel does, with HTTP 403 and a plain-text body), then the bearer
token. The smartapi-python SDK sends GET parameters as a JSON query string; they are ignored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from actors.angel.common import MAX_QUOTE_TOKENS, RATE_LIMIT_MESSAGE, RATE_LIMITS
from actors.angel.common import EndpointGroup as Group
from actors.sim.candles import CandleRequestError, parse_range, synthesize_candles
from actors.sim.exchange import AngelApiError, SimExchange, to_rupees
from actors.sim.rate_limits import SlidingWindowLimiter
from actors.sim.sessions import LoginError, Session, SessionStore

log = logging.getLogger(__name__)

RATE_LIMIT_TEXT = f"Access denied because of {RATE_LIMIT_MESSAGE}"
AUTH = "/rest/auth/angelbroking"
SECURE = "/rest/secure/angelbroking"
UNLIMITED = "unlimited"  # logout and order details: no published cap

Handler = Callable[[dict[str, Any], Session | None], Any]


def envelope(data: Any, message: str = "SUCCESS") -> dict[str, Any]:
    return {"status": True, "message": message, "errorcode": "", "data": data}


def error_envelope(code: str, message: str) -> dict[str, Any]:
    return {"status": False, "message": message, "errorcode": code, "data": None}


class SmartApiRest:
    """The REST side of the simulator over one account.

    Parameters
    ----------
    exchange : SimExchange
        Orders, books, GTT and the market.
    sessions : SessionStore
        Login and token checks.
    api_key : str
        The value ``X-PrivateKey`` must carry.
    enforce_rate_limits : bool
        Refuse calls over Angel's limits.
    clock_ns, monotonic : callable
        Wall clock (order times) and a monotonic clock in seconds (rate limits).
    seed : int
        Seed of the synthesised candles.
    """

    def __init__(
        self,
        exchange: SimExchange,
        sessions: SessionStore,
        api_key: str,
        enforce_rate_limits: bool,
        clock_ns: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
        seed: int = 7,
    ) -> None:
        self.exchange = exchange
        self.sessions = sessions
        self.api_key = api_key
        self.enforce_rate_limits = enforce_rate_limits
        self.limiter = SlidingWindowLimiter({group: limit.windows() for group, limit in RATE_LIMITS.items()})
        self.clock_ns = clock_ns
        self.monotonic = monotonic
        self.seed = seed
        self.calls = 0

    def routes(self) -> list[web.RouteDef]:
        table: list[tuple[str, str, str, Handler, bool]] = [
            # (method, path, group, handler, needs a session)
            ("POST", f"{AUTH}/user/v1/loginByPassword", Group.LOGIN, self._login, False),
            ("POST", f"{AUTH}/jwt/v1/generateTokens", Group.TOKEN, self._generate_tokens, False),
            ("GET", f"{SECURE}/user/v1/getProfile", Group.PROFILE, self._profile, True),
            ("POST", f"{SECURE}/user/v1/logout", UNLIMITED, self._logout, True),
            ("POST", f"{SECURE}/order/v1/placeOrder", Group.ORDERS, self._place, True),
            ("POST", f"{SECURE}/order/v1/modifyOrder", Group.ORDERS, self._modify, True),
            ("POST", f"{SECURE}/order/v1/cancelOrder", Group.ORDERS, self._cancel, True),
            ("GET", f"{SECURE}/order/v1/getOrderBook", Group.BOOKS, self._order_book, True),
            ("GET", f"{SECURE}/order/v1/getTradeBook", Group.BOOKS, self._trade_book, True),
            ("GET", f"{SECURE}/order/v1/getPosition", Group.BOOKS, self._positions, True),
            ("GET", f"{SECURE}/portfolio/v1/getHolding", Group.BOOKS, self._holdings, True),
            ("POST", f"{SECURE}/order/v1/getLtpData", Group.MARKET_DATA, self._ltp, True),
            ("POST", f"{SECURE}/market/v1/quote", Group.MARKET_DATA, self._quote, True),
            ("POST", f"{SECURE}/historical/v1/getCandleData", Group.CANDLES, self._candles, True),
        ]
        for prefix in ("", "/gtt-service"):  # the SDK uses the prefix; the docs do not
            table += [
                ("POST", f"{prefix}{SECURE}/gtt/v1/createRule", Group.MARKET_DATA, self._gtt_create, True),
                ("POST", f"{prefix}{SECURE}/gtt/v1/modifyRule", Group.MARKET_DATA, self._gtt_modify, True),
                ("POST", f"{prefix}{SECURE}/gtt/v1/cancelRule", Group.MARKET_DATA, self._gtt_cancel, True),
                ("POST", f"{prefix}{SECURE}/gtt/v1/ruleDetails", Group.MARKET_DATA, self._gtt_details, True),
                ("POST", f"{prefix}{SECURE}/gtt/v1/ruleList", Group.MARKET_DATA, self._gtt_list, True),
            ]
        routes = [
            web.route(method, path, self._endpoint(group, handler, auth))
            for method, path, group, handler, auth in table
        ]
        routes.append(web.get(f"{SECURE}/order/v1/details/{{uniqueorderid}}", self._order_details))
        return routes

    # ------------------------------------------------------------------------------- plumbing

    def _endpoint(
        self, group: str, handler: Handler, auth: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            self.calls += 1
            refused = self._check_headers(request)
            if refused is not None:
                return refused
            if self.enforce_rate_limits and group != UNLIMITED:
                caller = request.headers.get("Authorization") or request.headers.get("X-PrivateKey", "")
                if not self.limiter.allow(caller, group, self.monotonic()):
                    return web.Response(status=403, text=RATE_LIMIT_TEXT, content_type="text/plain")
            try:
                session = self.sessions.check(request.headers.get("Authorization")) if auth else None
                params = await self._params(request)
                data = handler(params, session)
            except LoginError as err:
                status = 401 if err.code.startswith("AG") else 200
                return web.json_response(error_envelope(err.code, err.message), status=status)
            except AngelApiError as err:
                return web.json_response(error_envelope(err.code, err.message))
            return web.json_response(envelope(data))

        return endpoint

    def _check_headers(self, request: web.Request) -> web.Response | None:
        headers = request.headers
        if headers.get("X-PrivateKey") != self.api_key:
            return web.json_response(error_envelope("AG8004", "Invalid API Key"), status=401)
        if headers.get("X-UserType") != "USER":
            return web.json_response(error_envelope("AB1005", "User Type Must Be USER"))
        if not headers.get("X-SourceID"):
            return web.json_response(error_envelope("AB1007", "X-SourceID header missing"))
        return None

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.method != "POST" or not request.can_read_body:
            return {}
        text = await request.text()
        if not text.strip():
            return {}
        try:
            params = json.loads(text)
        except json.JSONDecodeError:
            raise AngelApiError("AB1007", "Request body is not valid JSON") from None
        if not isinstance(params, dict):
            raise AngelApiError("AB1007", "Request body must be a JSON object")
        return params

    # ------------------------------------------------------------------------------- auth

    def _login(self, params: dict[str, Any], _: Session | None) -> Any:
        session = self.sessions.login(
            str(params.get("clientcode", "")), str(params.get("password", "")), str(params.get("totp", ""))
        )
        return {
            "jwtToken": session.jwt_token,
            "refreshToken": session.refresh_token,
            "feedToken": session.feed_token,
        }

    def _generate_tokens(self, params: dict[str, Any], _: Session | None) -> Any:
        session = self.sessions.refresh(str(params.get("refreshToken", "")))
        return {
            "jwtToken": session.jwt_token,
            "refreshToken": session.refresh_token,
            "feedToken": session.feed_token,
        }

    def _profile(self, _: dict[str, Any], session: Session | None) -> Any:
        assert session is not None
        return {
            "clientcode": session.client_code,
            "name": "SIMULATED TRADER",
            "email": "",
            "mobileno": "",
            "exchanges": ["NSE", "BSE", "NFO", "BFO", "MCX", "CDS"],
            "products": ["MARGIN", "MIS", "NRML", "CNC", "CO", "BO"],
            "lastlogintime": "",
            "brokerid": "SIM",
        }

    def _logout(self, _: dict[str, Any], session: Session | None) -> Any:
        assert session is not None
        self.sessions.logout(session)
        return ""

    # ------------------------------------------------------------------------------- orders

    def _place(self, params: dict[str, Any], _: Session | None) -> Any:
        orderid = self.exchange.place(params, self.clock_ns())
        order = self.exchange.orders[orderid]
        return {"script": order.instrument.symbol, "orderid": orderid, "uniqueorderid": order.uniqueorderid}

    def _modify(self, params: dict[str, Any], _: Session | None) -> Any:
        orderid = self.exchange.modify(params, self.clock_ns())
        return {"orderid": orderid, "uniqueorderid": self.exchange.orders[orderid].uniqueorderid}

    def _cancel(self, params: dict[str, Any], _: Session | None) -> Any:
        orderid = self.exchange.cancel(str(params.get("orderid", "")), self.clock_ns())
        return {"orderid": orderid, "uniqueorderid": self.exchange.orders[orderid].uniqueorderid}

    # Angel answers an empty book with data null, not an empty list.
    def _order_book(self, _: dict[str, Any], __: Session | None) -> Any:
        return self.exchange.order_book() or None

    def _trade_book(self, _: dict[str, Any], __: Session | None) -> Any:
        return self.exchange.trade_book() or None

    def _positions(self, _: dict[str, Any], __: Session | None) -> Any:
        return self.exchange.position_rows() or None

    def _holdings(self, _: dict[str, Any], __: Session | None) -> Any:
        return []

    async def _order_details(self, request: web.Request) -> web.StreamResponse:
        refused = self._check_headers(request)
        if refused is not None:
            return refused
        try:
            self.sessions.check(request.headers.get("Authorization"))
        except LoginError as err:
            return web.json_response(error_envelope(err.code, err.message), status=401)
        wanted = request.match_info["uniqueorderid"]
        for order in self.exchange.orders.values():
            if wanted in (order.uniqueorderid, order.orderid):
                return web.json_response(envelope(order.row()))
        return web.json_response(error_envelope("AB1013", f"Order not found: {wanted!r}"))

    # ------------------------------------------------------------------------------- market data

    def _ltp(self, params: dict[str, Any], _: Session | None) -> Any:
        inst = self.exchange.instrument(params.get("exchange"), params.get("symboltoken"))
        q = self.exchange.market.quote(self.exchange.market.index[inst.key])
        exch = inst.exchange
        return {
            "exchange": exch,
            "tradingsymbol": inst.symbol,
            "symboltoken": inst.token,
            "open": to_rupees(q.open, exch),
            "high": to_rupees(q.high, exch),
            "low": to_rupees(q.low, exch),
            "close": to_rupees(q.close, exch),
            "ltp": to_rupees(q.ltp, exch),
        }

    def _quote(self, params: dict[str, Any], _: Session | None) -> Any:
        mode = str(params.get("mode", "")).upper()
        if mode not in ("LTP", "OHLC", "FULL"):
            raise AngelApiError("AB1007", f"Invalid mode {params.get('mode')!r}: LTP, OHLC or FULL")
        wanted = params.get("exchangeTokens")
        if not isinstance(wanted, dict) or not wanted:
            raise AngelApiError(
                "AB1007", 'exchangeTokens must map exchange to tokens, e.g. {"NSE": ["3045"]}'
            )
        pairs = [(str(exch), str(token)) for exch, tokens in wanted.items() for token in (tokens or [])]
        if len(pairs) > MAX_QUOTE_TOKENS:
            raise AngelApiError(
                "AB1007", f"At most {MAX_QUOTE_TOKENS} tokens per quote request; got {len(pairs)}"
            )
        fetched, unfetched = [], []
        market = self.exchange.market
        for exch, token in pairs:
            index = market.index.get(f"{exch}:{token}")
            if index is None:
                unfetched.append(
                    {
                        "exchange": exch,
                        "symbolToken": token,
                        "message": "Symbol not found",
                        "errorCode": "AB1009",
                    }
                )
                continue
            fetched.append(self._quote_row(index, mode))
        return {"fetched": fetched, "unfetched": unfetched}

    def _quote_row(self, index: int, mode: str) -> dict[str, Any]:
        market = self.exchange.market
        inst = market.instruments[index]
        q = market.quote(index)
        exch = inst.exchange

        def r(value: int) -> float:
            return to_rupees(value, exch)

        row: dict[str, Any] = {
            "exchange": exch,
            "tradingSymbol": inst.symbol,
            "symbolToken": inst.token,
            "ltp": r(q.ltp),
        }
        if mode == "LTP":
            return row
        row |= {"open": r(q.open), "high": r(q.high), "low": r(q.low), "close": r(q.close)}
        if mode == "OHLC":
            return row
        tick = inst.tick_size
        change = q.ltp - q.close
        row |= {
            "lastTradeQty": int(inst.lot_size),
            "exchFeedTime": time.strftime("%d-%b-%Y %H:%M:%S", time.gmtime(q.ts_ms / 1000 + 19_800)),
            "exchTradeTime": time.strftime("%d-%b-%Y %H:%M:%S", time.gmtime(q.ts_ms / 1000 + 19_800)),
            "netChange": r(change),
            "percentChange": round(change * 100 / q.close, 2) if q.close else 0.0,
            "avgPrice": r(q.avg_price),
            "tradeVolume": q.volume,
            "opnInterest": q.oi,
            "lowerCircuit": r(q.lower_circuit),
            "upperCircuit": r(q.upper_circuit),
            "totBuyQuan": q.bid_qty * 8,
            "totSellQuan": q.ask_qty * 8,
            "52WeekLow": r(int(market.low_52w[index])),
            "52WeekHigh": r(int(market.high_52w[index])),
            "depth": {
                "buy": [{"price": r(q.bid - k * tick), "quantity": q.bid_qty, "orders": 1} for k in range(5)],
                "sell": [
                    {"price": r(q.ask + k * tick), "quantity": q.ask_qty, "orders": 1} for k in range(5)
                ],
            },
        }
        return row

    def _candles(self, params: dict[str, Any], _: Session | None) -> Any:
        inst = self.exchange.instrument(params.get("exchange"), params.get("symboltoken"))
        interval = str(params.get("interval", ""))
        try:
            start, end = parse_range(interval, params.get("fromdate", ""), params.get("todate", ""))
        except CandleRequestError as err:
            raise AngelApiError("AB1007", str(err)) from None
        return synthesize_candles(inst, interval, start, end, self.seed)

    # ------------------------------------------------------------------------------- GTT

    def _gtt_create(self, params: dict[str, Any], _: Session | None) -> Any:
        return {"id": str(self.exchange.gtt_create(params, self.clock_ns()))}

    def _gtt_modify(self, params: dict[str, Any], _: Session | None) -> Any:
        return {"id": str(self.exchange.gtt_modify(params, self.clock_ns()))}

    def _gtt_cancel(self, params: dict[str, Any], _: Session | None) -> Any:
        return {"id": str(self.exchange.gtt_cancel(params, self.clock_ns()))}

    def _gtt_details(self, params: dict[str, Any], _: Session | None) -> Any:
        return self.exchange.gtt_details(params.get("id"))

    def _gtt_list(self, params: dict[str, Any], _: Session | None) -> Any:
        statuses = params.get("status")
        if not isinstance(statuses, list) or not statuses:
            raise AngelApiError("AB1007", "status must be a list, e.g. ['NEW', 'CANCELLED']")
        try:
            page, count = int(params.get("page", 1)), int(params.get("count", 10))
        except (TypeError, ValueError):
            raise AngelApiError("AB1007", "page and count must be whole numbers") from None
        return self.exchange.gtt_list([str(s) for s in statuses], page, count)
