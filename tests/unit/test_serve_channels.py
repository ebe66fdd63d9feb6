from __future__ import annotations

import pytest

from serve.channels import Channel, ChannelError, ChannelKind, parse_channel
from serve.security import Permission


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("quote:NSE:3045", Channel(ChannelKind.QUOTE, "NSE:3045")),
        ("depth:NFO:63915", Channel(ChannelKind.DEPTH, "NFO:63915")),
        ("candles:NSE:3045:5m", Channel(ChannelKind.CANDLES, "NSE:3045", "5m")),
        ("candles:MCX:4321:1d", Channel(ChannelKind.CANDLES, "MCX:4321", "1d")),
        ("orders", Channel(ChannelKind.ORDERS)),
        ("positions", Channel(ChannelKind.POSITIONS)),
        ("deployments", Channel(ChannelKind.DEPLOYMENTS)),
        ("alerts", Channel(ChannelKind.ALERTS)),
    ],
)
def test_valid_channels_parse_and_round_trip(name: str, expected: Channel) -> None:
    channel = parse_channel(name)
    assert channel == expected
    assert channel.name == name
    assert channel.permission is Permission.READ


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "non-empty"),
        ("ticks:NSE:3045", "unknown channel kind 'ticks'"),
        ("quote", "not an 'EXCH:token' key"),
        ("quote:3045", "not an 'EXCH:token' key"),
        ("quote:nse:3045", "not an 'EXCH:token' key"),
        ("quote:NSE:30 45", "not an 'EXCH:token' key"),
        ("candles:NSE:3045", "unknown candle interval '3045'"),
        ("candles:NSE:3045:2m", "unknown candle interval '2m'"),
        ("candles:NSE:3045:", "unknown candle interval ''"),
        ("orders:manual", "takes no instrument"),
    ],
)
def test_bad_channels_say_what_is_wrong(name: str, reason: str) -> None:
    with pytest.raises(ChannelError, match=reason):
        parse_channel(name)
