"""Recording tick batches: the raw Parquet file the simulator replays, and the Nautilus catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nautilus_trader.model.data import QuoteTick, TradeTick
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from actors.shard.baseline import random_walk_ticks
from actors.shard.conversion import TickConverter
from actors.shard.universe import ShardInstrument
from actors.sim.market import ReplaySource
from actors.ticks import TICK_DTYPE, FeedMode, ticks_to_batch
from cluster.record import (
    RAW_SCHEMA,
    RecordingError,
    TickRecording,
    import_ticks,
    read_raw,
    strictly_increasing,
)

INSTRUMENTS = [ShardInstrument.equity(i, f"R{i}-EQ", str(3000 + i), lot_size=1) for i in range(3)]
BATCH = 64


def feed_like(ticks: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Stamp each batch of rows with one receive time, as the feed does."""
    out = ticks.copy()
    starts = (np.arange(len(out)) // batch) * batch
    out["ts_recv_ns"] = out["ts_recv_ns"][starts]
    return out


def record(catalog: Path, ticks: np.ndarray, name: str = "r1", batch: int = BATCH) -> TickRecording:
    recording = TickRecording(INSTRUMENTS, catalog, name, flush_rows=500)
    for start in range(0, len(ticks), batch):
        recording.write(ticks[start : start + batch])
    recording.close()
    return recording


def test_the_raw_file_keeps_every_row_in_order_with_its_exchange_and_token(tmp_path: Path) -> None:
    ticks = feed_like(random_walk_ticks(INSTRUMENTS, 2_000, seed=3, mode=FeedMode.SNAP_QUOTE))
    recording = record(tmp_path, ticks)
    table = pq.read_table(recording.raw_path)
    assert table.schema == RAW_SCHEMA
    assert pq.ParquetFile(recording.raw_path).num_row_groups >= 4  # flushed as it went, 500 rows at a time
    assert table.num_rows == len(ticks)
    assert np.array_equal(np.concatenate(list(read_raw(recording.raw_path))), ticks)
    keys = [
        f"{e}:{t}" for e, t in zip(table["exchange"].to_pylist(), table["token"].to_pylist(), strict=True)
    ]
    by_iid = {i.iid: i.key for i in INSTRUMENTS}
    assert keys == [by_iid[i] for i in ticks["iid"].tolist()]


def test_the_simulator_replays_a_recording(tmp_path: Path) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 300, seed=4, mode=FeedMode.SNAP_QUOTE)
    recording = record(tmp_path, ticks)
    replay = ReplaySource(str(recording.raw_path))
    assert len(replay) == 300
    assert replay.ltp.tolist() == ticks["ltp"].tolist()
    assert replay.bid.tolist() == ticks["bid"].tolist()
    assert replay.first_prices() == {i.key: int(ticks["ltp"][k]) for k, i in enumerate(INSTRUMENTS)}


def test_rows_of_instruments_not_recorded_are_counted_and_left_out(tmp_path: Path) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 30, seed=5)
    ticks["iid"][::3] = 99
    recording = TickRecording(INSTRUMENTS, tmp_path, "r1")
    assert recording.write(ticks_to_batch(ticks)) == 20  # an Arrow batch is taken too
    summary = recording.close()
    assert (summary.rows, summary.unknown_rows) == (20, 10)
    assert summary.silent == [INSTRUMENTS[0].key]  # every third row was R0's
    assert pq.read_table(recording.raw_path).num_rows == 20


def test_the_catalog_holds_what_the_shards_converter_makes_in_feed_order(tmp_path: Path) -> None:
    ticks = feed_like(random_walk_ticks(INSTRUMENTS, 3_000, seed=6, mode=FeedMode.SNAP_QUOTE))
    recording = record(tmp_path, ticks)
    summary = recording.summary
    converter = TickConverter(INSTRUMENTS)
    converter.subscribe_trades(i.instrument_id for i in INSTRUMENTS)
    converter.subscribe_quotes(i.instrument_id for i in INSTRUMENTS)
    expected = converter.convert(ticks.copy())
    assert (summary.trade_ticks, summary.quote_ticks) == (expected.trades, expected.quotes)
    assert summary.trade_ticks > 1_000
    catalog = ParquetDataCatalog(str(tmp_path))
    assert {i.id for i in catalog.instruments()} == {i.instrument_id for i in INSTRUMENTS}
    for inst in INSTRUMENTS:
        trades = catalog.query(TradeTick, identifiers=[inst.instrument_id.value])
        quotes = catalog.query(QuoteTick, identifiers=[inst.instrument_id.value])
        want = [
            t for t in expected.data if isinstance(t, TradeTick) and t.instrument_id == inst.instrument_id
        ]
        # same trades, same order (the trade id is the row's sequence number), same prices
        assert [(t.trade_id.value, t.price, t.size, t.ts_event) for t in trades] == [
            (t.trade_id.value, t.price, t.size, t.ts_event) for t in want
        ]
        stamps = np.array([t.ts_init for t in trades])
        assert (np.diff(stamps) > 0).all(), "receive times shared by a batch are spread 1 ns apart"
        assert len(quotes) == np.count_nonzero(ticks["iid"] == inst.iid)


def test_ticks_over_a_time_range_the_catalog_holds_are_refused_before_writing(tmp_path: Path) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 300, seed=7, mode=FeedMode.SNAP_QUOTE)
    first = record(tmp_path, ticks, "first")
    catalog = ParquetDataCatalog(str(tmp_path))
    trades, quotes = len(catalog.query(TradeTick)), len(catalog.query(QuoteTick))
    with pytest.raises(RecordingError, match=r"holds R0-EQ\.NSE ticks overlapping first\.parquet"):
        import_ticks(first.raw_path, tmp_path, INSTRUMENTS)
    shifted = ticks.copy()
    shifted["ts_recv_ns"] += 1_000_000_000  # a second recording, one second later: overlapping
    shifted["ts_exchange_ns"] += 1_000_000_000
    with pytest.raises(RecordingError, match=r"overlapping second\.parquet"):
        record(tmp_path, shifted, "second")
    assert (len(catalog.query(TradeTick)), len(catalog.query(QuoteTick))) == (trades, quotes)
    later = ticks.copy()
    later["ts_recv_ns"] += 10**12  # after the first one: fine
    record(tmp_path, later, "third")
    assert len(catalog.query(TradeTick)) == 2 * trades


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("write_after_close", "is closed"),
        ("same_name", "exists already"),
        ("no_instruments", "at least one instrument"),
        ("wrong_dtype", "expected actors.ticks.TICK_DTYPE"),
        ("not_parquet", "cannot read it as Parquet"),
    ],
)
def test_misuse_is_refused_with_a_reason(tmp_path: Path, action: str, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        if action == "write_after_close":
            recording = TickRecording(INSTRUMENTS, tmp_path, "x")
            recording.close()
            recording.write(np.zeros(1, dtype=TICK_DTYPE))
        elif action == "same_name":
            TickRecording(INSTRUMENTS, tmp_path, "x")
            TickRecording(INSTRUMENTS, tmp_path, "x")
        elif action == "no_instruments":
            TickRecording([], tmp_path, "x")
        elif action == "wrong_dtype":
            TickRecording(INSTRUMENTS, tmp_path, "x").write(np.zeros(3, dtype=np.int64))
        else:
            (tmp_path / "junk.parquet").write_text("not parquet")
            list(read_raw(tmp_path / "junk.parquet"))


def test_an_empty_recording_still_leaves_the_instruments(tmp_path: Path) -> None:
    summary = TickRecording(INSTRUMENTS, tmp_path, "empty").close()
    assert summary.rows == 0
    assert summary.silent == [i.key for i in INSTRUMENTS]
    assert len(ParquetDataCatalog(str(tmp_path)).instruments()) == len(INSTRUMENTS)


@settings(deadline=None)  # a shared machine's pauses are not the code's
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=200),
    st.integers(1, 50),
)
def test_strictly_increasing_times_in_chunks_equal_the_whole(steps: list[int], chunk: int) -> None:
    ts = np.cumsum(np.array(steps, dtype=np.int64)) + 1_000  # non-decreasing, with ties
    whole, _ = strictly_increasing(ts, 0, np.iinfo(np.int64).min // 2)
    assert (np.diff(whole) > 0).all()
    assert (whole >= ts).all()
    # never raised more than the ties before it need
    assert (whole - ts).max() <= len(ts)
    parts, carry, done = [], np.iinfo(np.int64).min // 2, 0
    for start in range(0, len(ts), chunk):
        part, carry = strictly_increasing(ts[start : start + chunk], done, carry)
        parts.append(part)
        done += len(part)
    assert np.array_equal(np.concatenate(parts), whole)
