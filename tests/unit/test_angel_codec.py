"""The vectorised SmartStream V2 decoder, held field by field to the SDK's own parser."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.angel.codec import DROP_REASONS, InstrumentIndex, TickDecoder, depth_from
from actors.angel.packets import EXCHANGE_BY_TYPE, EXCHANGE_TYPE, PACKET_DTYPE, encode_packets
from actors.angel.sdk import sdk_packet_parser
from actors.ticks import TICK_DTYPE, FeedMode

I64 = st.integers(-(2**63), 2**63 - 1)
MS = st.integers(0, 2**62 // 1_000_000)  # exchange timestamps whose nanoseconds fit in int64
TOKENS = st.text(alphabet="0123456789ABCXYZ-", min_size=1, max_size=25)
EXCHANGES = st.sampled_from(sorted(EXCHANGE_TYPE))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)

sdk_parse = sdk_packet_parser()


@st.composite
def packets(draw: Any, mode: FeedMode | None = None) -> tuple[str, bytes]:
    """One random packet of a random (or the given) mode, and its instrument key."""
    mode = mode or draw(st.sampled_from(list(FeedMode)))
    exchange = draw(EXCHANGES)
    token = draw(TOKENS)
    record = np.zeros(1, dtype=PACKET_DTYPE[mode])
    record["mode"] = mode
    record["exchange_type"] = EXCHANGE_TYPE[exchange]
    record["token"] = token.encode()
    record["seq"] = draw(I64)
    record["ts_exchange_ms"] = draw(MS)
    record["ltp"] = draw(I64)
    if mode >= FeedMode.QUOTE:
        for name in ("ltq", "avg_price", "volume", "open", "high", "low", "close"):
            record[name] = draw(I64)
        record["total_buy_qty"] = draw(FLOATS)
        record["total_sell_qty"] = draw(FLOATS)
    if mode == FeedMode.SNAP_QUOTE:
        record["ts_last_trade_ms"] = draw(MS)
        for name in ("oi", "oi_change_pct", "upper_circuit", "lower_circuit", "high_52w", "low_52w"):
            record[name] = draw(I64)
        depth = record["depth"][0]
        angel_layout = [1] * 5 + [0] * 5  # what Angel sends: five buys, then five sells
        depth["flag"] = draw(
            st.one_of(st.just(angel_layout), st.lists(st.sampled_from([0, 1]), min_size=10, max_size=10))
        )
        depth["qty"] = draw(st.lists(I64, min_size=10, max_size=10))
        depth["price"] = draw(st.lists(I64, min_size=10, max_size=10))
        depth["orders"] = draw(st.lists(st.integers(0, 2**16 - 1), min_size=10, max_size=10))
        record["depth"][0] = depth
    return f"{exchange}:{token}", encode_packets(record)[0]


def same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def expected_tick(parsed: dict[str, Any]) -> dict[str, int]:
    """What the tick batch must hold for one packet, derived from the SDK's parse."""
    mode = parsed["subscription_mode"]
    buys = parsed.get("best_5_buy_data", [])
    sells = parsed.get("best_5_sell_data", [])
    return {
        "mode": mode,
        "seq": parsed["sequence_number"],
        "ts_exchange_ns": parsed["exchange_timestamp"] * 1_000_000,
        "ltp": parsed["last_traded_price"],
        "ltq": parsed.get("last_traded_quantity", 0),
        "volume": parsed.get("volume_trade_for_the_day", 0),
        "oi": parsed.get("open_interest", 0),
        "bid": buys[0]["price"] if buys else 0,
        "bid_qty": buys[0]["quantity"] if buys else 0,
        "ask": sells[0]["price"] if sells else 0,
        "ask_qty": sells[0]["quantity"] if sells else 0,
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(packets(), min_size=1, max_size=40, unique_by=lambda p: p[0]))
def test_ticks_match_the_sdk_parser_field_by_field(batch: list[tuple[str, bytes]]) -> None:
    iid_by_key = {key: i * 3 + 1 for i, (key, _) in enumerate(batch)}
    decoder = TickDecoder.from_keys(iid_by_key)
    ticks = decoder.decode([frame for _, frame in batch], ts_recv_ns=123)
    assert ticks.dtype == TICK_DTYPE
    assert len(ticks) == len(batch)
    assert decoder.stats.decoded == len(batch) and decoder.stats.dropped_total == 0
    for tick, (key, frame) in zip(ticks, batch, strict=True):
        parsed = sdk_parse(frame)
        exchange = EXCHANGE_BY_TYPE[parsed["exchange_type"]]
        assert f"{exchange}:{parsed['token']}" == key
        assert tick["iid"] == iid_by_key[key]
        assert tick["ts_recv_ns"] == 123
        for name, value in expected_tick(parsed).items():
            assert tick[name] == value, name


@settings(max_examples=200, deadline=None)
@given(st.lists(packets(FeedMode.SNAP_QUOTE), min_size=1, max_size=20, unique_by=lambda p: p[0]))
def test_depth_matches_the_sdk_parser_including_which_side_is_buy(batch: list[tuple[str, bytes]]) -> None:
    decoder = TickDecoder.from_keys({key: i for i, (key, _) in enumerate(batch)})
    (group,) = decoder.split([frame for _, frame in batch])
    depth = depth_from(group)
    for row, (_, frame) in zip(depth, batch, strict=True):
        parsed = sdk_parse(frame)
        for side, levels in (("bids", parsed["best_5_buy_data"]), ("asks", parsed["best_5_sell_data"])):
            got = row[side]
            for slot in range(5):
                if slot < len(levels):
                    assert got["price"][slot] == levels[slot]["price"]
                    assert got["qty"][slot] == levels[slot]["quantity"]
                    assert got["orders"][slot] == levels[slot]["no of orders"]
                else:
                    assert got["price"][slot] == got["qty"][slot] == got["orders"][slot] == 0
        scalar = {
            "open": "open_price_of_the_day",
            "high": "high_price_of_the_day",
            "low": "low_price_of_the_day",
            "close": "closed_price",
            "avg_price": "average_traded_price",
            "upper_circuit": "upper_circuit_limit",
            "lower_circuit": "lower_circuit_limit",
            "high_52w": "52_week_high_price",
            "low_52w": "52_week_low_price",
            "oi": "open_interest",
            "oi_change_pct": "open_interest_change_percentage",
        }
        for name, sdk_name in scalar.items():
            assert row[name] == parsed[sdk_name], name
        assert row["ts_last_trade_ns"] == parsed["last_traded_timestamp"] * 1_000_000
        assert same_float(row["total_buy_qty"], parsed["total_buy_quantity"])
        assert same_float(row["total_sell_qty"], parsed["total_sell_quantity"])


def test_flag_one_is_the_buy_side() -> None:
    record = np.zeros(1, dtype=PACKET_DTYPE[FeedMode.SNAP_QUOTE])
    record["mode"] = FeedMode.SNAP_QUOTE
    record["exchange_type"] = 1
    record["token"] = b"3045"
    levels = record["depth"][0]
    levels["flag"] = [1] * 5 + [0] * 5
    levels["price"] = [100_00, 99_95, 99_90, 99_85, 99_80, 100_05, 100_10, 100_15, 100_20, 100_25]
    levels["qty"] = [10, 20, 30, 40, 50, 11, 21, 31, 41, 51]
    record["depth"][0] = levels
    ticks = TickDecoder.from_keys({"NSE:3045": 0}).decode(encode_packets(record), ts_recv_ns=0)
    assert (ticks["bid"][0], ticks["bid_qty"][0]) == (100_00, 10)
    assert (ticks["ask"][0], ticks["ask_qty"][0]) == (100_05, 11)


def make_frame(mode: FeedMode, key: str = "NSE:3045", seq: int = 1) -> bytes:
    exchange, token = key.split(":")
    record = np.zeros(1, dtype=PACKET_DTYPE[mode])
    record["mode"] = mode
    record["exchange_type"] = EXCHANGE_TYPE[exchange]
    record["token"] = token.encode()
    record["seq"] = seq
    record["ltp"] = 1000 + seq
    return encode_packets(record)[0]


LTP = make_frame(FeedMode.LTP)
SNAP = make_frame(FeedMode.SNAP_QUOTE)


@pytest.mark.parametrize(
    ("bad_frame", "reason"),
    [
        ("pong", "text"),
        (b"", "short"),
        (LTP[:50], "short"),
        (make_frame(FeedMode.QUOTE)[:100], "short"),
        (SNAP[:378], "short"),
        (bytes([4]) + SNAP[1:], "wrong_mode"),
        (bytes([0]) + LTP[1:], "wrong_mode"),
        (bytes([1]) + SNAP[1:123], "wrong_length"),
        (LTP + b"\0", "wrong_length"),
        (make_frame(FeedMode.LTP, "NSE:9999"), "unknown_token"),
        (make_frame(FeedMode.LTP, "BSE:3045"), "unknown_token"),
        (make_frame(FeedMode.SNAP_QUOTE, "NFO:3045"), "unknown_token"),
    ],
)
def test_malformed_frames_are_counted_by_reason_and_skipped(bad_frame: bytes | str, reason: str) -> None:
    decoder = TickDecoder.from_keys({"NSE:3045": 7})
    good = [make_frame(FeedMode.LTP, seq=1), make_frame(FeedMode.SNAP_QUOTE, seq=2)]
    ticks = decoder.decode([good[0], bad_frame, good[1]], ts_recv_ns=0)
    assert list(ticks["seq"]) == [1, 2]
    assert list(ticks["iid"]) == [7, 7]
    assert decoder.stats.dropped == {r: int(r == reason) for r in DROP_REASONS}
    assert decoder.stats.decoded == 2


@pytest.mark.parametrize(
    "frames",
    [
        [],
        ["pong", "pong"],
        [b"\x03"],
        [bytes(379)],
        [b"\xff" * 1000],
    ],
)
def test_nothing_decodable_gives_an_empty_batch(frames: list[bytes | str]) -> None:
    decoder = TickDecoder.from_keys({"NSE:3045": 0})
    ticks = decoder.decode(frames, ts_recv_ns=0)
    assert ticks.dtype == TICK_DTYPE and len(ticks) == 0
    assert decoder.stats.dropped_total == len(frames)


def test_mixed_modes_keep_feed_order() -> None:
    S, L, Q = FeedMode.SNAP_QUOTE, FeedMode.LTP, FeedMode.QUOTE
    modes = [S, L, Q, L, S, Q]
    frames = [make_frame(mode, seq=i) for i, mode in enumerate(modes)]
    ticks = TickDecoder.from_keys({"NSE:3045": 0}).decode(frames, ts_recv_ns=5)
    assert list(ticks["seq"]) == list(range(len(modes)))
    assert list(ticks["mode"]) == [int(m) for m in modes]


def test_single_mode_batch_with_one_odd_length_takes_the_careful_path() -> None:
    # Same total length as three good frames, but one frame long and one short.
    good = make_frame(FeedMode.LTP, seq=1)
    frames = [good, good + good[:1], good[1:]]
    decoder = TickDecoder.from_keys({"NSE:3045": 0})
    ticks = decoder.decode(frames, ts_recv_ns=0)
    assert len(ticks) == 1
    assert decoder.stats.dropped["wrong_length"] == 1 and decoder.stats.dropped["short"] == 1


def test_token_ends_at_the_first_nul_as_in_the_sdk() -> None:
    frame = bytearray(make_frame(FeedMode.LTP, "NSE:3045"))
    frame[2 + 4 + 1 : 2 + 25] = b"J" * (25 - 5)  # junk after the terminating NUL
    assert sdk_parse(bytes(frame))["token"] == "3045"
    ticks = TickDecoder.from_keys({"NSE:3045": 4}).decode([bytes(frame)], ts_recv_ns=0)
    assert list(ticks["iid"]) == [4]


def test_same_token_on_two_exchanges_gives_two_instruments() -> None:
    decoder = TickDecoder.from_keys({"NSE:3045": 1, "BSE:3045": 2, "NFO:3045": 3})
    frames = [make_frame(FeedMode.LTP, key) for key in ("BSE:3045", "NFO:3045", "NSE:3045")]
    assert list(decoder.decode(frames, ts_recv_ns=0)["iid"]) == [2, 3, 1]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("3045", "not 'EXCH:token'"),
        ("NSE:", "not 'EXCH:token'"),
        ("XNAS:3045", "unknown exchange 'XNAS'"),
        ("NSE:" + "1" * 26, "1-25 ASCII"),
        ("NSE:३०४५", "1-25 ASCII"),
    ],
)
def test_bad_instrument_keys_are_refused_by_name(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        InstrumentIndex({key: 0})
    assert repr(key) in str(err.value)


def test_negative_iid_is_refused() -> None:
    with pytest.raises(ValueError, match="iid -1"):
        InstrumentIndex({"NSE:1": -1})


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.tuples(EXCHANGES, TOKENS), st.integers(0, 2**31 - 1), max_size=200),
    st.lists(st.tuples(EXCHANGES, TOKENS), max_size=50),
)
def test_index_finds_every_known_key_and_no_unknown_one(
    known: dict[tuple[str, str], int], probes: list[tuple[str, str]]
) -> None:
    index = InstrumentIndex({f"{e}:{t}": iid for (e, t), iid in known.items()})
    queries = list(known) + probes
    keys = np.zeros((len(queries), 32), dtype=np.uint8)
    for row, (exchange, token) in enumerate(queries):
        raw = bytes([EXCHANGE_TYPE[exchange]]) + token.encode()
        keys[row, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    got = index.lookup(keys)
    assert list(got) == [known.get(q, -1) for q in queries]


def test_depth_refuses_records_without_depth() -> None:
    decoder = TickDecoder.from_keys({"NSE:3045": 0})
    (group,) = decoder.split([LTP])
    with pytest.raises(ValueError, match="SNAP_QUOTE"):
        depth_from(group)


def as_block(frames: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), len(frames[0]))


@settings(max_examples=100, deadline=None)
@given(st.lists(packets(), min_size=1, max_size=30, unique_by=lambda p: p[0]), st.integers(1, 5))
def test_packet_blocks_decode_like_single_frames(batch: list[tuple[str, bytes]], pieces: int) -> None:
    iid_by_key = {key: i for i, (key, _) in enumerate(batch)}
    frames = [frame for _, frame in batch]
    # Consecutive frames of one size form a block, as the raw receive path hands them over.
    items: list[bytes | np.ndarray] = []
    run: list[bytes] = []
    for frame in frames:
        if run and (len(frame) != len(run[0]) or len(run) == pieces):
            items.append(as_block(run) if len(run) > 1 else run[0])
            run = []
        run.append(frame)
    items.append(as_block(run) if len(run) > 1 else run[0])
    from_items = TickDecoder.from_keys(iid_by_key).decode(items, ts_recv_ns=9)
    from_frames = TickDecoder.from_keys(iid_by_key).decode(frames, ts_recv_ns=9)
    assert from_items.tobytes() == from_frames.tobytes()


def test_a_block_with_a_bad_mode_byte_is_counted_not_trusted() -> None:
    good = [make_frame(FeedMode.SNAP_QUOTE, seq=i) for i in range(3)]
    bad = bytes([2]) + good[1][1:]  # says QUOTE but is SNAP_QUOTE-sized
    decoder = TickDecoder.from_keys({"NSE:3045": 0})
    ticks = decoder.decode([as_block([good[0], bad, good[2]])], ts_recv_ns=0)
    assert list(ticks["seq"]) == [0, 2]
    assert decoder.stats.dropped["wrong_length"] == 1
