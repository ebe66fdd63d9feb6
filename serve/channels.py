"""The WebSocket channels a terminal client can subscribe to, and who may read each.

Names: ``quote:<EXCH:token>``, ``depth:<EXCH:token>``, ``candles:<EXCH:token>:<interval>``,
``orders``, ``positions``, ``deployments``, ``alerts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from serve.security import Permission


class ChannelKind(StrEnum):
    QUOTE = "quote"
    DEPTH = "depth"
    CANDLES = "candles"
    ORDERS = "orders"
    POSITIONS = "positions"
    DEPLOYMENTS = "deployments"
    ALERTS = "alerts"


INSTRUMENT_KINDS = frozenset({ChannelKind.QUOTE, ChannelKind.DEPTH, ChannelKind.CANDLES})

# Every channel is market or account state that any signed-in role may read; the table is here so
# a channel that needs more is one line to change.
CHANNEL_PERMISSIONS: dict[ChannelKind, Permission] = {kind: Permission.READ for kind in ChannelKind}

# Candle intervals the terminal offers, in seconds.
CANDLE_INTERVALS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "1d": 86400,
}

INSTRUMENT_KEY = re.compile(r"^[A-Z]{2,6}:[0-9A-Za-z_-]{1,25}$")


class ChannelError(ValueError):
    """A channel name that does not parse, or names an unknown interval."""


def check_instrument_key(key: str) -> str:
    if not INSTRUMENT_KEY.match(key):
        raise ChannelError(f"instrument {key!r} is not an 'EXCH:token' key (e.g. NSE:3045)")
    return key


@dataclass(frozen=True)
class Channel:
    kind: ChannelKind
    instrument: str | None = None
    interval: str | None = None

    @property
    def name(self) -> str:
        if self.kind is ChannelKind.CANDLES:
            return f"candles:{self.instrument}:{self.interval}"
        if self.kind in INSTRUMENT_KINDS:
            return f"{self.kind.value}:{self.instrument}"
        return self.kind.value

    @property
    def permission(self) -> Permission:
        return CHANNEL_PERMISSIONS[self.kind]


def parse_channel(name: str) -> Channel:
    """Parse and validate a channel name.

    Raises
    ------
    ChannelError
        Naming what is wrong: the kind, the instrument key or the interval.
    """
    if not isinstance(name, str) or not name:
        raise ChannelError("channel must be a non-empty string")
    kind_text, _, rest = name.partition(":")
    try:
        kind = ChannelKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in ChannelKind)
        raise ChannelError(f"unknown channel kind {kind_text!r}; one of: {known}") from None
    if kind not in INSTRUMENT_KINDS:
        if rest:
            raise ChannelError(f"channel {kind.value!r} takes no instrument")
        return Channel(kind)
    if kind is ChannelKind.CANDLES:
        instrument, _, interval = rest.rpartition(":")
        if interval not in CANDLE_INTERVALS:
            raise ChannelError(f"unknown candle interval {interval!r}; one of: {', '.join(CANDLE_INTERVALS)}")
        return Channel(kind, check_instrument_key(instrument), interval)
    return Channel(kind, check_instrument_key(rest))
