"""Parsing Angel's scrip master: every record kind, the malformed ones, JSON and CSV, iid order."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from catalog import scrip
from catalog.catalog import InstrumentCatalog
from catalog.scrip import ScripFormatError, normalise, read_scrip_master
from catalog.synth import SCRIP_FIELDS

RESOURCES = Path(__file__).resolve().parent.parent / "resources" / "scrip"
SAMPLE_JSON = RESOURCES / "OpenAPIScripMaster.sample.json"
SAMPLE_CSV = RESOURCES / "OpenAPIScripMaster.sample.csv"


@pytest.fixture(scope="module")
def sample() -> InstrumentCatalog:
    frame, report = read_scrip_master(SAMPLE_JSON)
    return InstrumentCatalog(frame, report)


# key, symbol, name, type, expiry, strike (minor units), option type, lot, tick (minor units), scale
GOOD = [
    ("NSE:3045", "SBIN-EQ", "SBIN", "EQ", None, None, None, 1, 5, 100),
    ("NSE:2885", "RELIANCE-EQ", "RELIANCE", "EQ", None, None, None, 1, 10, 100),
    ("NSE:14366", "IDEA-EQ", "IDEA", "EQ", None, None, None, 1, 1, 100),
    ("NSE:11536", "TCS-EQ", "TCS", "EQ", None, None, None, 1, 10, 100),  # numeric lotsize in the JSON
    ("NSE:4503", "MOREPENLAB-BE", "MOREPENLAB", "EQ", None, None, None, 1, 1, 100),
    ("NSE:1134", "SGBJUN27-GB", "SGBJUN27", "EQ", None, None, None, 1, 1, 100),
    ("BSE:500112", "SBIN", "SBIN", "EQ", None, None, None, 1, 5, 100),
    ("NSE:99926000", "NIFTY 50", "NIFTY", "AMXIDX", None, None, None, 1, 5, 100),
    ("NSE:99926009", "Nifty Bank", "BANKNIFTY", "AMXIDX", None, None, None, 1, 5, 100),
    ("BSE:99919000", "SENSEX", "SENSEX", "AMXIDX", None, None, None, 1, 1, 100),  # zero tick -> 1
    ("NFO:61093", "NIFTY28JUL26FUT", "NIFTY", "FUTIDX", date(2026, 7, 28), None, None, 65, 10, 100),
    ("NFO:63915", "NIFTY28JUL2623500CE", "NIFTY", "OPTIDX", date(2026, 7, 28), 2_350_000, "CE", 65, 5, 100),
    ("NFO:63916", "NIFTY28JUL2623500PE", "NIFTY", "OPTIDX", date(2026, 7, 28), 2_350_000, "PE", 65, 5, 100),
    ("NFO:57020", "SBIN28JUL26FUT", "SBIN", "FUTSTK", date(2026, 7, 28), None, None, 750, 10, 100),
    ("NFO:57031", "RELIANCE28JUL26FUT", "RELIANCE", "FUTSTK", date(2026, 7, 28), None, None, 500, 10, 100),
    ("NFO:70412", "IDEA28JUL267.5CE", "IDEA", "OPTSTK", date(2026, 7, 28), 750, "CE", 71475, 5, 100),
    ("BFO:1134", "SENSEX30JUL2677500CE", "SENSEX", "OPTIDX", date(2026, 7, 30), 7_750_000, "CE", 20, 5, 100),
    ("MCX:472789", "CRUDEOIL20JUL26FUT", "CRUDEOIL", "FUTCOM", date(2026, 7, 20), None, None, 100, 100, 100),
    (
        "MCX:472790",
        "CRUDEOIL26JUL5000CE",
        "CRUDEOIL",
        "OPTFUT",
        date(2026, 7, 16),
        500_000,
        "CE",
        100,
        10,
        100,
    ),
    ("CDS:3045", "USDINR26JULFUT", "USDINR", "FUTCUR", date(2026, 7, 29), None, None, 1, 25_000, 10**7),
    (
        "CDS:2885",
        "USDINR26JUL8425CE",
        "USDINR",
        "OPTCUR",
        date(2026, 7, 29),
        842_500_000,
        "CE",
        1,
        25_000,
        10**7,
    ),
    ("NCDEX:58453", "DHANIYA20AUG2026", "DHANIYA", "FUTCOM", date(2026, 8, 20), None, None, 5, 200, 100),
]


@pytest.mark.parametrize(
    ("key", "symbol", "name", "itype", "expiry", "strike", "option_type", "lot", "tick", "scale"), GOOD
)
def test_each_record_kind_parses_to_the_expected_instrument(
    sample: InstrumentCatalog,
    key: str,
    symbol: str,
    name: str,
    itype: str,
    expiry: date | None,
    strike: int | None,
    option_type: str | None,
    lot: int,
    tick: int,
    scale: int,
) -> None:
    instrument = sample.get(key)
    assert instrument is not None, key
    assert instrument.key == key
    assert (instrument.symbol, instrument.name, instrument.instrument_type) == (symbol, name, itype)
    assert (instrument.expiry, instrument.strike, instrument.option_type) == (expiry, strike, option_type)
    assert (instrument.lot_size, instrument.tick_size, instrument.price_scale) == (lot, tick, scale)
    assert sample.by_iid(instrument.iid) is instrument


SKIPPED = [
    ("GS2035JUN26FUT", scrip.UNKNOWN_TYPE),
    ("NOTOKEN-EQ", scrip.MISSING_TOKEN),
    ("ABSENTTOKEN-EQ", scrip.MISSING_TOKEN),  # the field is absent from the record altogether
    ("NIFTY31FEB2623500CE", scrip.BAD_EXPIRY),
    ("TCSFUT", scrip.MISSING_EXPIRY),
    ("ZEROLOT-EQ", scrip.BAD_LOT),
    ("WORDLOT-EQ", scrip.BAD_LOT),
    ("NOTICK-EQ", scrip.BAD_TICK),
    ("NIFTY28JUL26NOSTRIKECE", scrip.BAD_STRIKE),
    ("NIFTY28JUL2623600XX", scrip.BAD_OPTION_TYPE),
    ("ELSEWHERE-EQ", scrip.UNKNOWN_EXCHANGE),
    ("CASHINFO-EQ", scrip.TYPE_NOT_ON_EXCHANGE),
    ("SBIN-BE", scrip.DUPLICATE_KEY),
    ("", scrip.MISSING_SYMBOL),
]


@pytest.mark.parametrize(("symbol", "reason"), SKIPPED)
def test_malformed_records_are_skipped_under_their_reason(
    sample: InstrumentCatalog, symbol: str, reason: str
) -> None:
    if symbol != "SBIN-BE":  # the repeated key's symbol is also a skipped record's, not a kept one
        assert sample.frame().filter(pl.col("symbol") == symbol).height == 0
    examples = " ".join(sample.report.examples[reason])
    assert f"symbol '{symbol}'" in examples


def test_report_counts_every_record_once(sample: InstrumentCatalog) -> None:
    report = sample.report
    records = json.loads(SAMPLE_JSON.read_text())
    assert report.records == len(records)
    assert report.loaded == len(GOOD) + 5 == len(sample)  # five more NIFTY options/futures rows
    assert report.skipped_total == len(SKIPPED)
    assert report.skipped[scrip.MISSING_TOKEN] == 2 and report.skipped[scrip.BAD_LOT] == 2
    assert "skipped 14" in report.summary()


def test_first_record_of_a_repeated_key_wins(sample: InstrumentCatalog) -> None:
    sbin = sample.get("NSE:3045")
    assert sbin is not None and sbin.symbol == "SBIN-EQ"
    assert sample.resolve_symbol("NSE", "SBIN-BE") is None


def test_tokens_repeat_across_segments_and_stay_apart(sample: InstrumentCatalog) -> None:
    tokens = {key: sample.get(key) for key in ("NSE:3045", "CDS:3045", "NSE:1134", "BFO:1134")}
    assert {key: i.symbol for key, i in tokens.items() if i} == {
        "NSE:3045": "SBIN-EQ",
        "CDS:3045": "USDINR26JULFUT",
        "NSE:1134": "SGBJUN27-GB",
        "BFO:1134": "SENSEX30JUL2677500CE",
    }
    assert sample.resolve_token("NSE", "3045") is tokens["NSE:3045"]
    assert sample.resolve_token("CDS", "3045") is tokens["CDS:3045"]


def test_csv_form_gives_the_same_instruments_as_json() -> None:
    from_json, _ = read_scrip_master(SAMPLE_JSON)
    from_csv, report = read_scrip_master(SAMPLE_CSV)
    assert report.skipped == {}
    assert from_csv.height == 27
    assert from_csv.equals(from_json)


def test_iids_follow_content_not_file_order() -> None:
    records = json.loads(SAMPLE_JSON.read_text())[:27]
    forward, _ = normalise(pl.DataFrame(records, schema=dict.fromkeys(SCRIP_FIELDS, pl.String)), "a")
    backward, _ = normalise(pl.DataFrame(records[::-1], schema=dict.fromkeys(SCRIP_FIELDS, pl.String)), "b")
    assert forward.equals(backward)
    kinds = forward.get_column("kind").to_list()
    assert kinds == sorted(kinds), "cash before indices before futures before options"


def test_option_chain_and_futures_runs_are_contiguous(sample: InstrumentCatalog) -> None:
    chain = sample.option_chain("NIFTY", date(2026, 7, 28))
    assert [row.strike for row in chain.rows] == [2_345_000, 2_350_000, 2_355_000]
    legs = [(r.call.symbol if r.call else None, r.put.symbol if r.put else None) for r in chain.rows]
    assert legs == [
        (None, "NIFTY28JUL2623450PE"),
        ("NIFTY28JUL2623500CE", "NIFTY28JUL2623500PE"),
        ("NIFTY28JUL2623550CE", None),
    ]
    assert [f.symbol for f in sample.futures("NIFTY")] == ["NIFTY28JUL26FUT", "NIFTY25AUG26FUT"]
    assert sample.expiries("NIFTY") == [date(2026, 7, 21), date(2026, 7, 28)]
    assert sample.nearest_expiry("NIFTY") == date(2026, 7, 21)
    assert sample.nearest_expiry("NIFTY", on=date(2026, 7, 22)) == date(2026, 7, 28)
    assert sample.nearest_expiry("NIFTY", on=date(2026, 7, 29)) is None
    assert sample.nearest_expiry("NIFTY", options=False) == date(2026, 7, 28)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b'{"token": "1"}', "single JSON object"),
        (b'[{"token":"3045","symbol":"SBIN-EQ"', "not a valid scrip master JSON"),
        (b"[1, 2, 3]", "no record has the field(s) token, symbol"),
        (b'[{"token": "1"}] trailing', "not a valid scrip master JSON"),
        (b'[{"token":"1","symbol":"A"}]', "no record has the field(s) name, expiry"),
        (b"token,symbol\n1,A\n", "CSV header lacks name"),
        (b"\x00\x01\x02garbage", "not a scrip master"),
    ],
)
def test_files_that_are_not_scrip_masters_are_refused(tmp_path: Path, body: bytes, message: str) -> None:
    path = tmp_path / "master.json"
    path.write_bytes(body)
    with pytest.raises(ScripFormatError, match=re.escape(message)):
        read_scrip_master(path)


def test_odd_array_elements_are_skipped_not_fatal(tmp_path: Path) -> None:
    records = json.loads(SAMPLE_JSON.read_text())[:27]
    nested = dict(records[0], token="777", symbol="NESTED-EQ", strike={"value": "-1"})
    path = tmp_path / "odd.json"
    path.write_text(json.dumps([*records, None, [1, 2], "SBIN-EQ", 42, nested]))
    frame, report = read_scrip_master(path)
    assert frame.height == 27
    assert report.skipped == {scrip.NOT_A_RECORD: 4, scrip.NESTED_VALUE: 1}
    assert report.records == 32
    expected, _ = read_scrip_master(SAMPLE_CSV)
    assert frame.equals(expected)


def test_an_empty_array_is_an_empty_catalog(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("[]")
    frame, report = read_scrip_master(path)
    assert frame.height == 0 and report.records == 0
    catalog = InstrumentCatalog(frame, report)
    assert len(catalog) == 0 and catalog.search("sbin") == []


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScripFormatError, match="cannot read"):
        read_scrip_master(tmp_path / "absent.json")
