"""Angel One facts the integration builds on: endpoints, endpoint groups, rate limits, error codes.

Each fact lives here once; the REST client, the limiter and the simulator read them from here.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

REST_URL = "https://apiconnect.angelone.in"
STREAM_URL = "wss://smartapisocket.angelone.in/smart-stream"
ORDER_UPDATES_URL = "wss://tns.angelone.in/smart-order-update"

# Sessions last up to ~28 h; tokens that carry no `exp` claim are assumed to live this long.
SESSION_TTL_S = 28 * 3600.0

# Angel's order tag is capped at 20 characters (error AB4008 past that).
MAX_ORDER_TAG_LEN = 20

# A quote request carries at most 50 tokens.
MAX_QUOTE_TOKENS = 50


class EndpointGroup(StrEnum):
    """Endpoints that share one rate-limit budget at the broker."""

    ORDERS = "orders"  # placeOrder, modifyOrder, cancelOrder
    MARKET_DATA = "market_data"  # getLtpData, quote, GTT (all), order details
    CANDLES = "candles"  # getCandleData
    BOOKS = "books"  # getOrderBook, getTradeBook, getPosition, getHolding, searchScrip
    LOGIN = "login"  # loginByPassword
    TOKEN = "token"  # generateTokens
    PROFILE = "profile"  # getProfile


class RateLimit(msgspec.Struct, frozen=True):
    """Calls allowed per second, minute and hour (None: no published cap for that window)."""

    per_second: int
    per_minute: int | None = None
    per_hour: int | None = None

    def windows(self) -> list[tuple[float, int]]:
        """(window length in seconds, calls allowed) for every window that has a cap."""
        caps = [(1.0, self.per_second), (60.0, self.per_minute), (3600.0, self.per_hour)]
        return [(length, cap) for length, cap in caps if cap is not None]


# Angel's published table; all three windows apply at once.
RATE_LIMITS: dict[EndpointGroup, RateLimit] = {
    EndpointGroup.ORDERS: RateLimit(20, 500, 1000),
    EndpointGroup.MARKET_DATA: RateLimit(10, 500, 5000),
    EndpointGroup.CANDLES: RateLimit(3, 500, 5000),
    EndpointGroup.BOOKS: RateLimit(1),
    EndpointGroup.LOGIN: RateLimit(1),
    EndpointGroup.TOKEN: RateLimit(1, None, 1000),
    EndpointGroup.PROFILE: RateLimit(3, None, 1000),
}


class CandleInterval(StrEnum):
    ONE_MINUTE = "ONE_MINUTE"
    THREE_MINUTE = "THREE_MINUTE"
    FIVE_MINUTE = "FIVE_MINUTE"
    TEN_MINUTE = "TEN_MINUTE"
    FIFTEEN_MINUTE = "FIFTEEN_MINUTE"
    THIRTY_MINUTE = "THIRTY_MINUTE"
    ONE_HOUR = "ONE_HOUR"
    ONE_DAY = "ONE_DAY"


# The longest date range one getCandleData request may span, per interval.
CANDLE_MAX_DAYS: dict[CandleInterval, int] = {
    CandleInterval.ONE_MINUTE: 30,
    CandleInterval.THREE_MINUTE: 60,
    CandleInterval.FIVE_MINUTE: 100,
    CandleInterval.TEN_MINUTE: 100,
    CandleInterval.FIFTEEN_MINUTE: 200,
    CandleInterval.THIRTY_MINUTE: 200,
    CandleInterval.ONE_HOUR: 400,
    CandleInterval.ONE_DAY: 2000,
}

CANDLE_TIME_FORMAT = "%Y-%m-%d %H:%M"


class Variety(StrEnum):
    NORMAL = "NORMAL"
    STOPLOSS = "STOPLOSS"
    AMO = "AMO"
    ROBO = "ROBO"


class GttStatus(StrEnum):
    NEW = "NEW"
    CANCELLED = "CANCELLED"
    ACTIVE = "ACTIVE"
    SENTTOEXCHANGE = "SENTTOEXCHANGE"
    FORALL = "FORALL"


# GTT rules exist for cash equity only, in these products.
GTT_EXCHANGES = frozenset({"NSE", "BSE"})
GTT_PRODUCTS = frozenset({"DELIVERY", "MARGIN"})

# Exchanges whose prices are quoted in 1e-7 rupee instead of paise.
SEVEN_DECIMAL_EXCHANGES = frozenset({"CDS"})


def price_scale(exchange: str) -> int:
    """How many minor units make one rupee on this exchange (100 paise; 1e7 on currency derivatives)."""
    return 10_000_000 if exchange in SEVEN_DECIMAL_EXCHANGES else 100


# Error codes that mean "this session's access token is no good": renew, then retry once.
TOKEN_ERROR_CODES = frozenset({"AG8001", "AG8002", "AG8003", "AB1010", "AB1011"})
# The refresh token itself is dead: only a fresh login helps.
REFRESH_ERROR_CODES = frozenset({"AB8050", "AB8051"})
INVALID_API_KEY_CODES = frozenset({"AG8004"})
# Login answers: wrong client code / PIN, and a TOTP the broker refused.
BAD_CREDENTIAL_CODES = frozenset({"AB1000", "AB1001", "AB1002", "AB1007", "AB1031", "AB1032"})
BAD_TOTP_CODES = frozenset({"AB1050"})
ORDER_NOT_FOUND_CODES = frozenset({"AB1013"})
# Worth a retry after a pause: the broker's "something went wrong" family.
TRANSIENT_CODES = frozenset({"AB1004", "AB2000", "AB2001"})

# The broker's answer to a caller over its rate limit (sometimes as plain text, not JSON).
RATE_LIMIT_MESSAGE = "exceeding access rate"
