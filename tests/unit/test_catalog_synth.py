"""The synthetic scrip master: Angel's exact format, exact size, deterministic, plausible prices."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.catalog import InstrumentCatalog
from catalog.instrument import Instrument, InstrumentKind
from catalog.scrip import normalise, read_scrip_master
from catalog.synth import (
    SCRIP_FIELDS,
    SYNTH_REFERENCE_DATE,
    base_price_paise,
    synthesize,
    underlying_price,
    write_scrip_master,
)
from cluster.errors import ShardlineError

AS_OF = date(2026, 11, 26)


@pytest.fixture(scope="module")
def records() -> list[dict[str, str]]:
    return synthesize(30_000, seed=1, as_of=AS_OF)


@pytest.fixture(scope="module")
def catalog(records: list[dict[str, str]]) -> InstrumentCatalog:
    frame, report = normalise(pl.DataFrame(records, schema=dict.fromkeys(SCRIP_FIELDS, pl.String)), "synth")
    return InstrumentCatalog(frame, report)


@pytest.mark.parametrize("count", [1, 7, 60, 200, 1_000, 5_000])
def test_exactly_count_records(count: int) -> None:
    assert len(synthesize(count, seed=2)) == count


def test_count_must_be_positive() -> None:
    with pytest.raises(ShardlineError, match="count must be at least 1"):
        synthesize(0, seed=1)


def test_same_seed_same_master_and_other_seeds_differ() -> None:
    assert synthesize(3_000, seed=9) == synthesize(3_000, seed=9)
    assert synthesize(3_000, seed=9) != synthesize(3_000, seed=10)
    assert synthesize(3_000, seed=9) == synthesize(3_000, seed=9, as_of=SYNTH_REFERENCE_DATE)


def test_records_have_angels_exact_shape(records: list[dict[str, str]]) -> None:
    expiry = re.compile(r"^\d{2}(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\d{4}$")
    number = re.compile(r"^-?\d+\.\d{6}$")
    for record in records:
        assert tuple(record) == SCRIP_FIELDS
        assert all(isinstance(value, str) for value in record.values())
        assert record["expiry"] == "" or expiry.match(record["expiry"])
        assert number.match(record["strike"]) and number.match(record["tick_size"])
        assert record["lotsize"].isdigit() and record["token"].isdigit()


def test_every_record_loads_and_keys_are_unique(catalog: InstrumentCatalog, records: list) -> None:
    assert catalog.report.skipped == {} and len(catalog) == len(records)
    assert catalog.report.duplicate_symbols == 0


def test_covers_every_segment_and_kind(records: list[dict[str, str]]) -> None:
    kinds = Counter((r["exch_seg"], r["instrumenttype"]) for r in records)
    for expected in [
        ("NSE", ""), ("BSE", ""), ("NSE", "AMXIDX"), ("BSE", "AMXIDX"), ("NFO", "FUTIDX"), ("NFO", "FUTSTK"),
        ("NFO", "OPTIDX"), ("NFO", "OPTSTK"), ("BFO", "FUTIDX"), ("BFO", "OPTIDX"), ("MCX", "FUTCOM"),
        ("MCX", "OPTFUT"), ("CDS", "FUTCUR"), ("CDS", "OPTCUR"),
    ]:  # fmt: skip
        assert kinds[expected] > 0, expected
    # options dominate, as in Angel's file
    options = sum(n for (_, itype), n in kinds.items() if itype.startswith("OPT"))
    assert options > len(records) / 2


def test_well_known_rows(catalog: InstrumentCatalog) -> None:
    nifty = catalog.get("NSE:99926000")
    assert nifty is not None and (nifty.symbol, nifty.name, nifty.instrument_type) == (
        "NIFTY 50",
        "NIFTY",
        "AMXIDX",
    )
    assert catalog.resolve("NSE:SBIN-EQ").token == "3045"
    assert catalog.resolve("NSE:RELIANCE-EQ").token == "2885"
    assert catalog.resolve("BSE:SENSEX").token == "99919000"
    series = Counter(i.series for i in catalog.instruments if i.exchange == "NSE" and i.series)
    assert set(series) == {"EQ", "BE"} and series["EQ"] > series["BE"] > 0


def test_tokens_repeat_across_segments(records: list[dict[str, str]]) -> None:
    by_token: dict[str, set[str]] = {}
    for r in records:
        by_token.setdefault(r["token"], set()).add(r["exch_seg"])
    assert any(len(segments) > 1 for segments in by_token.values())


def test_expiries_fall_on_or_after_the_trading_day(catalog: InstrumentCatalog) -> None:
    expiries = {i.expiry for i in catalog.instruments if i.expiry}
    assert min(expiries) >= AS_OF
    nifty = catalog.expiries("NIFTY")
    assert all(e.weekday() == 1 for e in nifty)  # Tuesdays
    assert len(nifty) > len(catalog.expiries("BANKNIFTY"))  # NIFTY has weeklies
    assert all(e.weekday() == 3 for e in catalog.expiries("SENSEX"))  # Thursdays


def test_chains_are_centred_on_the_underlying_price(catalog: InstrumentCatalog) -> None:
    for underlying in ("NIFTY", "SBIN", "GOLD", "USDINR"):
        chain = catalog.option_chain(underlying, catalog.expiries(underlying)[0])
        strikes = chain.strikes
        leg = chain.rows[0].call or chain.rows[0].put
        assert leg is not None
        spot = underlying_price(underlying, leg.price_scale)
        assert strikes[0] <= spot <= strikes[-1], underlying
        assert all(row.call and row.put for row in chain.rows), "every strike has both legs"
        steps = {b - a for a, b in itertools.pairwise(strikes)}
        assert len(steps) == 1, f"{underlying} strikes evenly spaced"


def test_symbols_follow_angels_conventions(catalog: InstrumentCatalog) -> None:
    chain = catalog.option_chain("NIFTY", date(2026, 12, 1))
    row = next(r for r in chain.rows if r.strike == 2_350_000)
    assert row.call is not None and row.call.symbol == "NIFTY01DEC2623500CE"
    assert next(f.symbol for f in catalog.futures("NIFTY")) == "NIFTY29DEC26FUT"
    usdinr = catalog.option_chain("USDINR", catalog.expiries("USDINR")[0])
    assert any(r.call and r.call.symbol.startswith("USDINR26N27") for r in usdinr.rows)  # weekly YYMDD form


def test_base_prices_are_whole_ticks(catalog: InstrumentCatalog) -> None:
    for instrument in list(catalog.instruments)[::97]:
        price = base_price_paise(instrument)
        assert price >= instrument.tick_size and price % instrument.tick_size == 0, instrument.symbol
    assert base_price_paise(catalog.resolve("NSE:SBIN-EQ")) == 82_000
    assert base_price_paise(catalog.resolve("NSE:NIFTY 50")) == 2_350_000


def _option(strike: int, right: str) -> Instrument:
    return Instrument(0, "NFO", "1", "X", "NIFTY", "OPTIDX", AS_OF, strike, right, 65, 5, 100)


@settings(max_examples=200, deadline=None)
@given(low=st.integers(1, 4_000), high=st.integers(1, 4_000))
def test_option_prices_are_monotone_in_strike(low: int, high: int) -> None:
    low, high = sorted((low * 1_000, high * 1_000))
    assert base_price_paise(_option(low, "CE")) >= base_price_paise(_option(high, "CE"))
    assert base_price_paise(_option(low, "PE")) <= base_price_paise(_option(high, "PE"))


def test_base_price_of_an_unknown_name_is_stable_and_plausible() -> None:
    price = underlying_price("SOMENEWCO")
    assert price == underlying_price("SOMENEWCO")
    assert 20 * 100 <= price <= 6_000 * 100
    assert underlying_price("USDINR", 10**7) == 842_500_000
    assert InstrumentKind.EQUITY < InstrumentKind.OPTION


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_written_file_reads_back_identically(tmp_path: Path, suffix: str) -> None:
    rows = synthesize(500, seed=4)
    path = tmp_path / f"master{suffix}"
    write_scrip_master(rows, path)
    if suffix == ".json":
        assert json.loads(path.read_text()) == rows
    frame, report = read_scrip_master(path)
    expected, _ = normalise(pl.DataFrame(rows, schema=dict.fromkeys(SCRIP_FIELDS, pl.String)), "x")
    assert report.skipped == {} and frame.equals(expected)
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_writing_without_replace_keeps_the_first_file(tmp_path: Path) -> None:
    path = tmp_path / "master.json"
    write_scrip_master(synthesize(20, seed=1), path, replace=False)
    first = path.read_bytes()
    write_scrip_master(synthesize(30, seed=2), path, replace=False)
    assert path.read_bytes() == first
    write_scrip_master(synthesize(30, seed=2), path)
    assert len(json.loads(path.read_text())) == 30
    assert [p.name for p in tmp_path.iterdir()] == ["master.json"]
