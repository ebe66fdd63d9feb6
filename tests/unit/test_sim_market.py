"""The simulated market: tick grid, circuit band, determinism, sequence numbers, replay, hours."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.angel.packets import EXCHANGE_TYPE, LTP_DTYPE, SNAP_QUOTE_DTYPE
from actors.sim.market import MarketModel, ReplaySource, RoundRobin, grouped_cumsum, last_of_each
from actors.sim.market_hours import IST, MarketHours
from actors.sim.universe import SimInstrument, starting_price, synthetic_universe
from actors.ticks import TICK_SCHEMA, empty_ticks, ticks_to_batch


def run(market: MarketModel, steps: int, batch: int) -> list[np.ndarray]:
    rotation = RoundRobin()
    everyone = np.arange(len(market))
    return [market.step(rotation.take(everyone, batch), 1_000 + i) for i in range(steps)]


@pytest.mark.parametrize("seed", [1, 7, 12345])
def test_same_seed_same_market(seed: int) -> None:
    a = run(MarketModel(synthetic_universe(50, seed), seed), 30, 70)
    b = run(MarketModel(synthetic_universe(50, seed), seed), 30, 70)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))
    c = run(MarketModel(synthetic_universe(50, seed + 1), seed + 1), 30, 70)
    assert any(x.tobytes() != y.tobytes() for x, y in zip(a, c, strict=True))


def test_prices_stay_on_the_grid_and_inside_the_band() -> None:
    market = MarketModel(synthetic_universe(40, 3), 3)
    rows = np.concatenate(run(market, 400, 97))  # 97 > 40: instruments repeat within a batch
    idx = np.array([market.index[f"{_exch(r)}:{r['token'].decode()}"] for r in rows[:500]])
    tick = market.tick[idx]
    head = rows[:500]
    for field in ("ltp", "open", "high", "low", "upper_circuit", "lower_circuit"):
        assert (head[field] % tick == 0).all(), field
    assert (head["depth"]["price"] % tick[:, None] == 0).all()
    assert (rows["ltp"] >= rows["lower_circuit"]).all() and (rows["ltp"] <= rows["upper_circuit"]).all()
    assert (rows["low"] <= rows["ltp"]).all() and (rows["ltp"] <= rows["high"]).all()
    bids, asks = rows["depth"]["price"][:, 0], rows["depth"]["price"][:, 5]
    assert (bids < asks).all()
    assert (rows["depth"]["flag"][:, :5] == 1).all() and (rows["depth"]["flag"][:, 5:] == 0).all()
    # best five are ordered best first on both sides
    assert (np.diff(rows["depth"]["price"][:, :5], axis=1) < 0).all()
    assert (np.diff(rows["depth"]["price"][:, 5:], axis=1) > 0).all()


def _exch(row: np.void) -> str:
    return {v: k for k, v in EXCHANGE_TYPE.items()}[int(row["exchange_type"])]


@pytest.mark.parametrize(
    ("exchange", "kind", "close", "tick", "lower", "upper"),
    [
        ("NSE", "", 100_000, 5, 80_000, 120_000),  # equity ±20%
        ("NSE", "", 12_345, 5, 9_880, 14_810),  # band edges rounded inwards onto the grid
        ("NFO", "FUTIDX", 2_350_000, 10, 1_410_000, 3_290_000),  # derivatives ±40%
    ],
)
def test_circuit_band(exchange: str, kind: str, close: int, tick: int, lower: int, upper: int) -> None:
    inst = SimInstrument(exchange, "11", "X", tick, 1, close, kind)
    market = MarketModel([inst], seed=1)
    assert (market.lower_circuit[0], market.upper_circuit[0]) == (lower, upper)


def test_a_walk_pinned_at_the_band_stays_there() -> None:
    inst = SimInstrument("NSE", "11", "X", 5, 1, 100_000)
    market = MarketModel([inst], seed=1)
    market.ltp[0] = market.upper_circuit[0]
    rows = market.step(np.zeros(5_000, dtype=np.int64), 1)
    assert rows["ltp"].max() == 120_000 and (rows["depth"]["price"][:, 5] <= 120_000).all()


def test_sequence_numbers_count_up_per_token_without_gaps() -> None:
    market = MarketModel(synthetic_universe(7, 1), 1)
    rows = np.concatenate(run(market, 50, 23))
    for token in np.unique(rows["token"]):
        seqs = rows["seq"][rows["token"] == token]
        assert (seqs == np.arange(1, len(seqs) + 1)).all()
    assert market.ticks_made == 50 * 23 == int(market.seq.sum())


def test_volume_accumulates_and_oi_only_for_derivatives() -> None:
    market = MarketModel(synthetic_universe(10, 2), 2)
    rows = np.concatenate(run(market, 20, 10))
    for n, inst in enumerate(market.instruments):
        mine = rows[rows["token"] == inst.token.encode()]
        assert (np.diff(mine["volume"]) == mine["ltq"][1:]).all()
        assert (mine["ltq"] % inst.lot_size == 0).all()
        assert (mine["oi"] > 0).all() if inst.is_derivative else (mine["oi"] == 0).all()
        assert market.volume[n] == mine["volume"][-1]


def test_ltp_packet_is_a_prefix_of_the_snap_quote_record() -> None:
    market = MarketModel(synthetic_universe(3, 2), 2)
    rows = market.step(np.arange(3), 5)
    raw = np.frombuffer(rows.tobytes(), dtype=np.uint8).reshape(3, SNAP_QUOTE_DTYPE.itemsize)
    ltp = np.frombuffer(raw[:, : LTP_DTYPE.itemsize].tobytes(), dtype=LTP_DTYPE)
    assert (ltp["ltp"] == rows["ltp"]).all() and (ltp["seq"] == rows["seq"]).all()


@given(groups=st.lists(st.integers(0, 5), max_size=60), data=st.data())
def test_grouped_cumsum_matches_a_loop(groups: list[int], data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(-100, 100), min_size=len(groups), max_size=len(groups)))
    running: dict[int, int] = {}
    expected = []
    for g, v in zip(groups, values, strict=True):
        running[g] = running.get(g, 0) + v
        expected.append(running[g])
    got = grouped_cumsum(np.array(groups, dtype=np.int64), np.array(values, dtype=np.int64))
    assert got.tolist() == expected
    if groups:
        last = last_of_each(np.array(groups))
        newest = {g: i for i, g in enumerate(groups)}
        assert sorted(last.tolist()) == sorted(newest.values())


def test_round_robin_spreads_evenly() -> None:
    rotation = RoundRobin()
    active = np.array([4, 9, 2])
    taken = np.concatenate([rotation.take(active, 5) for _ in range(6)])
    assert np.bincount(taken).tolist() == [0, 0, 10, 0, 10, 0, 0, 0, 0, 10]


def test_starting_price_is_deterministic_and_on_grid() -> None:
    a = starting_price("NSE:3045", "", 5, seed=7)
    assert a == starting_price("NSE:3045", "", 5, seed=7) and a % 5 == 0 and 2_000 <= a <= 400_000
    assert a != starting_price("NSE:3045", "", 5, seed=8)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"exchange": "NYSE"}, "unknown exchange 'NYSE'"),
        ({"token": ""}, "must be 1-24 ASCII"),
        ({"base_price": 100_003}, "off the tick grid"),
        ({"lot_size": 0}, "must be positive"),
    ],
)
def test_instrument_checks(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"exchange": "NSE", "token": "1", "symbol": "X"}
    base |= {"tick_size": 5, "lot_size": 1, "base_price": 100}
    with pytest.raises(ValueError, match=message):
        SimInstrument(**{**base, **fields})  # type: ignore[arg-type]


def test_market_refuses_repeated_keys() -> None:
    inst = SimInstrument("NSE", "1", "X", 5, 1, 100)
    with pytest.raises(ValueError, match="repeat"):
        MarketModel([inst, inst], 1)


# ----------------------------------------------------------------------------------------- replay


def write_recording(path: Path, keys: list[tuple[str, str]], ltps: list[int]) -> None:
    ticks = empty_ticks(len(keys))
    ticks["ltp"] = ltps
    ticks["ltq"] = 3
    ticks["ts_exchange_ns"] = np.arange(len(keys)) * 1_000_000 + 1_700_000_000_000_000_000
    batch = ticks_to_batch(ticks)
    table = pa.Table.from_batches([batch], schema=TICK_SCHEMA)
    table = table.append_column("exchange", pa.array([k[0] for k in keys]))
    table = table.append_column("token", pa.array([k[1] for k in keys]))
    pq.write_table(table, path)


def test_replay_plays_recorded_prices_in_order(tmp_path: Path) -> None:
    path = tmp_path / "ticks.parquet"
    keys = [("NSE", "1"), ("NFO", "2"), ("NSE", "1"), ("NSE", "1")]
    write_recording(path, keys, [10_000, 50_000, 10_005, 9_990])
    source = ReplaySource(str(path))
    assert source.first_prices() == {"NSE:1": 10_000, "NFO:2": 50_000}
    market = MarketModel(
        [SimInstrument("NSE", "1", "A", 5, 1, 10_000), SimInstrument("NFO", "2", "B", 5, 1, 50_000)], 1
    )
    idx, rows = source.play(market, 3)
    assert idx.tolist() == [0, 1, 0] and rows["ltp"].tolist() == [10_000, 50_000, 10_005]
    assert rows["seq"].tolist() == [1, 1, 2]
    assert (rows["depth"]["price"][:, 0] < rows["ltp"]).all()  # a quote made around the trade
    idx, rows = source.play(market, 10)
    assert rows["ltp"].tolist() == [9_990] and source.exhausted
    assert rows["ts_exchange_ms"].tolist() == [1_700_000_000_003]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not parquet", "cannot read it as Parquet"), (None, "missing columns")],
)
def test_replay_refuses_bad_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.parquet"
    if content is None:
        pq.write_table(pa.table({"ltp": [1]}), path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        ReplaySource(str(path))


def test_replay_refuses_instruments_the_market_lacks(tmp_path: Path) -> None:
    path = tmp_path / "ticks.parquet"
    write_recording(path, [("NSE", "77")], [100])
    market = MarketModel([SimInstrument("NSE", "1", "A", 5, 1, 10_000)], 1)
    with pytest.raises(ValueError, match="NSE:77"):
        ReplaySource(str(path)).play(market, 1)


# ----------------------------------------------------------------------------------------- hours


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        (datetime(2026, 7, 6, 9, 14, 59, tzinfo=IST), False),  # Monday, a second before the open
        (datetime(2026, 7, 6, 9, 15, tzinfo=IST), True),
        (datetime(2026, 7, 6, 15, 29, 59, tzinfo=IST), True),
        (datetime(2026, 7, 6, 15, 30, tzinfo=IST), False),
        (datetime(2026, 7, 4, 11, 0, tzinfo=IST), False),  # Saturday
    ],
)
def test_market_hours(when: datetime, is_open: bool) -> None:
    ts_ns = int(when.timestamp()) * 1_000_000_000
    assert MarketHours(enabled=True).is_open(ts_ns) is is_open
    assert MarketHours(enabled=False).is_open(ts_ns) is True
