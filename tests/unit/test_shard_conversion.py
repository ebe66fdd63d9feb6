"""Tick batches to Nautilus ticks: exact prices, precision, which rows become which tick type."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nautilus_trader.model.currencies import INR
from nautilus_trader.model.data import QuoteTick, TradeTick
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import CurrencyPair
from nautilus_trader.model.objects import Price, Quantity

from actors.shard.conversion import TickConverter
from actors.shard.universe import CURRENCY_DERIVATIVE_SCALE, ShardInstrument
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.errors import ShardlineError

SBIN = ShardInstrument.equity(0, "SBIN-EQ", "3045")
RELIANCE = ShardInstrument.equity(3, "RELIANCE-EQ", "2885")


def usdinr() -> ShardInstrument:
    """A currency future quoted to 4 decimals, with 1e-7 rupee transport units (CDS)."""
    from nautilus_trader.model.currencies import USD

    instrument = CurrencyPair(
        instrument_id=InstrumentId(Symbol("USDINR26JULFUT"), Venue("CDS")),
        raw_symbol=Symbol("USDINR26JULFUT"),
        base_currency=USD,
        quote_currency=INR,
        price_precision=4,
        size_precision=0,
        price_increment=Price.from_str("0.0025"),
        size_increment=Quantity.from_int(1),
        ts_event=0,
        ts_init=0,
    )
    return ShardInstrument(
        iid=7, key="CDS:1151", instrument=instrument, price_scale=CURRENCY_DERIVATIVE_SCALE
    )


def rows(*specs: dict[str, int]) -> np.ndarray:
    out = np.zeros(len(specs), dtype=TICK_DTYPE)
    for k, spec in enumerate(specs):
        out[k]["ts_exchange_ns"] = 1_000 + k
        out[k]["ts_recv_ns"] = 2_000 + k
        out[k]["seq"] = k + 1
        for name, value in spec.items():
            out[k][name] = value
    return out


def converter(*instruments: ShardInstrument, trades: bool = True, quotes: bool = True) -> TickConverter:
    conv = TickConverter(instruments)
    if trades:
        conv.subscribe_trades(i.instrument_id for i in instruments)
    if quotes:
        conv.subscribe_quotes(i.instrument_id for i in instruments)
    return conv


@pytest.mark.parametrize(
    ("row", "kinds"),
    [
        ({"iid": 0, "mode": FeedMode.LTP, "ltp": 80_005}, [TradeTick]),
        ({"iid": 0, "mode": FeedMode.QUOTE, "ltp": 80_005, "ltq": 10, "volume": 100}, [TradeTick]),
        # LTP and QUOTE rows carry no book: a bid/ask there is ignored
        (
            {"iid": 0, "mode": FeedMode.QUOTE, "ltp": 80_005, "ltq": 3, "bid": 80_000, "ask": 80_010},
            [TradeTick],
        ),
        (
            {
                "iid": 0,
                "mode": FeedMode.SNAP_QUOTE,
                "ltp": 80_005,
                "ltq": 3,
                "volume": 9,
                "bid": 80_000,
                "ask": 80_010,
            },
            [QuoteTick, TradeTick],
        ),
        # a one-sided book gives no quote
        (
            {"iid": 0, "mode": FeedMode.SNAP_QUOTE, "ltp": 80_005, "ltq": 3, "volume": 9, "bid": 80_000},
            [TradeTick],
        ),
        # no trade yet today (ltp 0, volume 0): only the quote
        ({"iid": 0, "mode": FeedMode.SNAP_QUOTE, "bid": 80_000, "ask": 80_010}, [QuoteTick]),
        ({"iid": 0, "mode": FeedMode.LTP, "ltp": 0}, []),
        ({"iid": 99, "mode": FeedMode.LTP, "ltp": 80_005}, []),  # not in the universe
        ({"iid": -1, "mode": FeedMode.LTP, "ltp": 80_005}, []),
    ],
)
def test_which_rows_become_which_ticks(row: dict[str, int], kinds: list[type]) -> None:
    batch = converter(SBIN).convert(rows(row))
    assert [type(d) for d in batch.data] == kinds
    assert batch.trades == kinds.count(TradeTick)
    assert batch.quotes == kinds.count(QuoteTick)


def test_prices_sizes_and_timestamps_are_exact() -> None:
    batch = converter(SBIN).convert(
        rows(
            {
                "iid": 0,
                "mode": FeedMode.SNAP_QUOTE,
                "ltp": 123_456_785,
                "ltq": 25,
                "volume": 1000,
                "bid": 123_456_780,
                "ask": 123_456_790,
                "bid_qty": 7,
                "ask_qty": 0,
            }
        )
    )
    quote, trade = batch.data
    assert isinstance(trade, TradeTick) and isinstance(quote, QuoteTick)
    assert trade.price == Price.from_str("1234567.85")
    assert trade.price.precision == 2
    assert trade.size == Quantity.from_int(25)
    assert trade.instrument_id == SBIN.instrument_id
    assert trade.trade_id.value == "1"
    assert (trade.ts_event, trade.ts_init) == (1_000, 2_000)
    assert quote.bid_price == Price.from_str("1234567.80")
    assert quote.ask_price == Price.from_str("1234567.90")
    assert (quote.bid_size, quote.ask_size) == (Quantity.from_int(7), Quantity.from_int(0))
    assert list(batch.ts_recv_ns) == [2_000, 2_000]


def test_ltp_row_without_quantity_gets_size_one() -> None:
    (trade,) = converter(SBIN).convert(rows({"iid": 0, "mode": FeedMode.LTP, "ltp": 80_005})).data
    assert trade.size == Quantity.from_int(1)


def test_currency_derivative_scale_and_precision() -> None:
    inst = usdinr()
    conv = converter(inst)
    (trade,) = conv.convert(rows({"iid": 7, "mode": FeedMode.LTP, "ltp": 832_525_000})).data
    assert trade.price == Price.from_str("83.2525")
    assert trade.price.precision == 4
    # 1e-7 units below the instrument's 4 decimals cannot be a price of it: refused, counted
    batch = conv.convert(rows({"iid": 7, "mode": FeedMode.LTP, "ltp": 832_525_001}))
    assert batch.data == []
    assert batch.invalid_rows == 1


@settings(max_examples=300, deadline=None)
@given(paise=st.integers(min_value=1, max_value=10**13))
def test_paise_to_price_is_exact_for_any_value(paise: int) -> None:
    (trade,) = converter(SBIN).convert(rows({"iid": 0, "mode": FeedMode.LTP, "ltp": paise})).data
    assert trade.price.as_decimal() == Decimal(paise) / 100


def test_snap_quote_trade_only_when_volume_moves() -> None:
    conv = converter(SBIN, RELIANCE, quotes=False)
    snap = {"mode": FeedMode.SNAP_QUOTE, "ltp": 10_000, "ltq": 5, "bid": 9_995, "ask": 10_005}
    batch = conv.convert(
        rows(
            {**snap, "iid": 0, "volume": 100},  # first sighting: a trade
            {**snap, "iid": 3, "volume": 50},  # another instrument, first sighting
            {**snap, "iid": 0, "volume": 100},  # book-only change: no trade
            {**snap, "iid": 0, "volume": 105},  # new trade
            {**snap, "iid": 3, "volume": 50},  # book-only change
        )
    )
    assert [t.trade_id.value for t in batch.data] == ["1", "2", "4"]
    # the state carries over to the next batch
    again = conv.convert(rows({**snap, "iid": 0, "volume": 105}, {**snap, "iid": 3, "volume": 51}))
    assert [t.instrument_id for t in again.data] == [RELIANCE.instrument_id]


def test_only_subscribed_instruments_and_types_are_built() -> None:
    conv = TickConverter([SBIN, RELIANCE])
    snap = {"mode": FeedMode.SNAP_QUOTE, "ltp": 10_000, "ltq": 5, "volume": 1, "bid": 9_995, "ask": 10_005}
    ticks = rows({**snap, "iid": 0}, {**snap, "iid": 3})
    assert conv.convert(ticks).data == []
    conv.subscribe_quotes([RELIANCE.instrument_id])
    conv.subscribe_trades([SBIN.instrument_id])
    batch = conv.convert(rows({**snap, "iid": 0, "volume": 2}, {**snap, "iid": 3, "volume": 2}))
    assert [(type(d), d.instrument_id) for d in batch.data] == [
        (TradeTick, SBIN.instrument_id),
        (QuoteTick, RELIANCE.instrument_id),
    ]
    conv.subscribe_trades([SBIN.instrument_id], on=False)
    assert conv.is_subscribed(SBIN.instrument_id) == (False, False)


def test_vectorised_batch_keeps_feed_order_and_counts() -> None:
    n = 10_000
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    ticks["iid"] = np.where(np.arange(n) % 2 == 0, 0, 3)
    ticks["iid"][::100] = 42  # unknown
    ticks["mode"] = FeedMode.QUOTE
    ticks["ltp"] = 100_000 + np.arange(n)
    ticks["ltq"] = 1
    ticks["seq"] = np.arange(n)
    ticks["ts_exchange_ns"] = np.arange(n)
    ticks["ts_recv_ns"] = np.arange(n) + 5
    batch = converter(SBIN, RELIANCE).convert(ticks)
    assert batch.rows == n
    assert batch.unknown_rows == n // 100
    assert batch.trades == len(batch.data) == n - n // 100
    seqs = [int(d.trade_id.value) for d in batch.data]
    assert seqs == sorted(seqs)
    expected = [Decimal(100_000 + s) / 100 for s in seqs]
    assert [d.price.as_decimal() for d in batch.data] == expected
    assert list(batch.ts_recv_ns) == [s + 5 for s in seqs]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"iid": 0, "mode": FeedMode.LTP, "ltp": 100, "ts_recv_ns": -1}, "negative timestamp"),
        (
            {"iid": 0, "mode": FeedMode.SNAP_QUOTE, "bid": 100, "ask": 105, "bid_qty": -3},
            "negative size",
        ),
    ],
)
def test_malformed_rows_are_counted_not_raised(row: dict[str, int], reason: str) -> None:
    batch = converter(SBIN).convert(rows(row))
    assert batch.data == [], reason
    assert batch.invalid_rows == 1


def test_wrong_dtype_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ShardlineError, match="TICK_DTYPE"):
        converter(SBIN).convert(np.zeros(3, dtype=[("iid", "<i4")]))


def test_duplicate_iids_are_refused() -> None:
    with pytest.raises(ShardlineError, match="iid 0 appears twice"):
        TickConverter([SBIN, ShardInstrument.equity(0, "TCS-EQ", "11536")])


@pytest.mark.parametrize(
    ("fields", "ltp", "price"),
    [
        (
            {
                "exchange": "NSE",
                "token": "3045",
                "symbol": "SBIN-EQ",
                "instrument_type": "EQ",
                "tick_size": 5,
            },
            81_235,
            "812.35",
        ),
        (
            {
                "exchange": "NFO",
                "token": "61093",
                "symbol": "NIFTY28JUL26FUT",
                "instrument_type": "FUTIDX",
                "tick_size": 10,
                "lot_size": 65,
            },
            2_350_010,
            "23500.10",
        ),
    ],
)
def test_catalog_instruments_convert_exactly(fields: dict[str, Any], ltp: int, price: str) -> None:
    from datetime import date

    from catalog.instrument import Instrument

    values: dict[str, Any] = {
        "iid": 5,
        "name": fields["symbol"].split("-")[0],
        "expiry": date(2026, 7, 28) if fields["exchange"] == "NFO" else None,
        "strike": None,
        "option_type": None,
        "lot_size": 1,
        "price_scale": 100,
    }
    values.update(fields)
    entry = Instrument(**values)
    inst = ShardInstrument.from_catalog(entry)
    assert inst.key == f"{fields['exchange']}:{fields['token']}"
    assert inst.instrument_id.value == entry.nautilus_id
    (trade,) = converter(inst).convert(rows({"iid": 5, "mode": FeedMode.LTP, "ltp": ltp})).data
    assert trade.price == Price.from_str(price)
