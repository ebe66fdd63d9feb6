"""Universe queries and instrument specs, over a synthetic master with a fixed trading day."""

from __future__ import annotations

import re
from datetime import date

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.catalog import InstrumentCatalog
from catalog.instrument import InstrumentKind
from catalog.scrip import normalise
from catalog.synth import NIFTY_50, SCRIP_FIELDS, base_price_paise, synthesize
from cluster.errors import ShardlineError

AS_OF = date(2026, 11, 26)  # a Thursday; NSE weekly expiries fall on Tuesdays


@pytest.fixture(scope="module")
def catalog() -> InstrumentCatalog:
    records = synthesize(8_000, seed=3, as_of=AS_OF)
    frame, report = normalise(pl.DataFrame(records, schema=dict.fromkeys(SCRIP_FIELDS, pl.String)), "synth")
    return InstrumentCatalog(frame, report)


def strikes_of(instruments: list) -> list[int]:
    return sorted({i.strike for i in instruments})


def test_nse_equities_are_shares_by_name(catalog: InstrumentCatalog) -> None:
    found = catalog.select("NSE equities")
    assert found and all(i.exchange == "NSE" and i.kind is InstrumentKind.EQUITY for i in found)
    assert all(i.series in ("EQ", "BE") for i in found)
    assert [i.name for i in found] == sorted(i.name for i in found)
    assert catalog.select("NSE equities", limit=5) == found[:5]
    assert catalog.select("nse  equities top 3") == found[:3]
    assert catalog.select("NSE equities top 30", limit=4) == found[:4]


def test_bse_equities_and_indices(catalog: InstrumentCatalog) -> None:
    bse = catalog.select("BSE equities")
    assert bse and {i.exchange for i in bse} == {"BSE"}
    indices = catalog.select("NSE indices")
    assert "NIFTY 50" in {i.symbol for i in indices}
    assert all(i.kind is InstrumentKind.INDEX for i in indices)


def test_nifty_50_constituents_is_the_fixed_list(catalog: InstrumentCatalog) -> None:
    found = catalog.select("NIFTY 50 constituents")
    assert [i.symbol for i in found] == [f"{name}-EQ" for name in NIFTY_50]
    assert len(found) == 50 and {i.exchange for i in found} == {"NSE"}


def test_futures_nearest_expiry_first(catalog: InstrumentCatalog) -> None:
    found = catalog.select("NIFTY futures")
    expiries = [i.expiry for i in found if i.expiry is not None]
    assert expiries == sorted(expiries) and len(expiries) == len(found)
    assert all(i.kind is InstrumentKind.FUTURE and i.name == "NIFTY" for i in found)
    assert catalog.select("nifty futures", limit=1) == found[:1]


@pytest.mark.parametrize(
    "query",
    [
        "NIFTY weekly options ±3 strikes",
        "nifty weekly options +-3 strikes",
        "NIFTY  weekly options +/-3 strike",
    ],
)
def test_weekly_options_around_the_base_price(catalog: InstrumentCatalog, query: str) -> None:
    found = catalog.select(query)
    expiry = catalog.nearest_expiry("NIFTY")
    assert expiry == date(2026, 12, 1)  # the first Tuesday on or after the trading day
    assert all(i.expiry == expiry and i.name == "NIFTY" for i in found)
    spot = catalog.spot("NIFTY")
    assert spot is not None and spot.symbol == "NIFTY 50"
    atm = base_price_paise(spot)
    assert strikes_of(found) == [atm + step * 5_000 for step in range(-3, 4)]
    assert [i.option_type for i in found[:2]] == ["CE", "PE"]
    assert len(found) == 14


def test_atm_from_given_prices(catalog: InstrumentCatalog) -> None:
    by_name = catalog.select("NIFTY options ±1 strikes", atm_prices={"NIFTY": 2_401_900})
    assert strikes_of(by_name) == [2_395_000, 2_400_000, 2_405_000]
    by_key = catalog.select("NIFTY options ±1 strikes", atm_prices={"NSE:99926000": 2_298_000})
    assert strikes_of(by_key) == [2_295_000, 2_300_000, 2_305_000]


def test_monthly_options_use_the_last_expiry_of_the_month(catalog: InstrumentCatalog) -> None:
    found = catalog.select("NIFTY monthly options ±2 strikes")
    assert {i.expiry for i in found} == {date(2026, 12, 29)}  # last Tuesday of December
    assert len(strikes_of(found)) == 5


def test_options_without_a_width_take_the_whole_chain(catalog: InstrumentCatalog) -> None:
    found = catalog.select("SENSEX options")
    expiry = found[0].expiry
    assert expiry is not None
    chain = catalog.option_chain("SENSEX", expiry)
    assert found == chain.instruments()
    assert {i.exchange for i in found} == {"BFO"}


def test_options_without_a_cash_underlying_centre_on_the_nearest_future(catalog: InstrumentCatalog) -> None:
    # CDS and MCX options are on futures: there is no spot row, so the future's price is ATM
    future = catalog.futures("USDINR")[0]
    atm = base_price_paise(future)
    found = catalog.select("USDINR options ±1 strikes")
    step = 10**7 // 4  # ₹0.25 in 1e-7 rupee
    centre = round(atm / step) * step
    assert strikes_of(found) == [centre - step, centre, centre + step]
    assert all(i.price_scale == 10**7 for i in found)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("BANKNIFTY weekly options ±2 strikes", "BANKNIFTY has no weekly options"),
        ("FOO futures", "no futures or options on 'FOO'"),
        ("FOO options ±2 strikes", "no futures or options on 'FOO'"),
        ("GOLDM options ±2 strikes", "no GOLDM options"),
        ("all the things", "understood forms"),
        ("NSE bonds", "understood forms"),
        ("NIFTY options ±x strikes", "understood forms"),
        ("NSE equities top 0", "top must be at least 1"),
    ],
)
def test_bad_queries_say_what_is_wrong(catalog: InstrumentCatalog, query: str, message: str) -> None:
    with pytest.raises(ShardlineError, match=re.escape(message)):
        catalog.select(query)


def test_unknown_query_lists_every_form(catalog: InstrumentCatalog) -> None:
    with pytest.raises(ShardlineError) as err:
        catalog.select("top gainers")
    for form in (
        "NSE equities",
        "NIFTY 50 constituents",
        "<UNDERLYING> futures",
        "weekly options ±N strikes",
    ):
        assert form in str(err.value)


def test_limit_must_be_positive(catalog: InstrumentCatalog) -> None:
    with pytest.raises(ShardlineError, match="limit must be at least 1"):
        catalog.select("NSE equities", limit=0)


@pytest.mark.parametrize(
    ("spec", "symbol"),
    [
        ("NSE:3045", "SBIN-EQ"),
        ("nse:3045", "SBIN-EQ"),
        ("NSE:SBIN-EQ", "SBIN-EQ"),
        ("nse:sbin-eq", "SBIN-EQ"),
        (" NSE : NIFTY 50 ", "NIFTY 50"),
        ("NSE:99926000", "NIFTY 50"),
        ("BSE:SBIN", "SBIN"),
    ],
)
def test_resolve_specs(catalog: InstrumentCatalog, spec: str, symbol: str) -> None:
    assert catalog.resolve(spec).symbol == symbol


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("SBIN-EQ", "expected 'EXCH:token' or 'EXCH:SYMBOL'"),
        ("NSE:", "expected 'EXCH:token' or 'EXCH:SYMBOL'"),
        (":3045", "expected 'EXCH:token' or 'EXCH:SYMBOL'"),
        ("NASDAQ:AAPL", "unknown exchange NASDAQ"),
        ("NSE:NOSUCH-EQ", "no token or symbol 'NOSUCH-EQ' on NSE"),
        ("NFO:3045", "no token or symbol '3045' on NFO"),
    ],
)
def test_resolve_errors_name_the_problem(catalog: InstrumentCatalog, spec: str, message: str) -> None:
    with pytest.raises(ShardlineError, match=re.escape(message)):
        catalog.resolve(spec)


def test_iids_of_keys_for_lookup_arrays(catalog: InstrumentCatalog) -> None:
    sbin = catalog.resolve("NSE:SBIN-EQ")
    nifty = catalog.resolve("NSE:NIFTY 50")
    found = catalog.iids(["NSE:3045", "NSE:404404", nifty.key])
    assert found.dtype.name == "int32" and found.tolist() == [sbin.iid, -1, nifty.iid]


def test_lookups_miss_cleanly(catalog: InstrumentCatalog) -> None:
    assert catalog.get("NSE:0") is None
    assert catalog.resolve_token("NFO", "3045") is None
    assert catalog.resolve_symbol("NSE", "sbin-eq") is None  # exact lookups are case-sensitive
    with pytest.raises(IndexError):
        catalog.by_iid(len(catalog))
    with pytest.raises(IndexError):
        catalog.by_iid(-1)
    with pytest.raises(ShardlineError, match="no NIFTY options on NFO expiring 2026-12-02"):
        catalog.option_chain("NIFTY", date(2026, 12, 2))


def test_instruments_sequence_is_in_iid_order(catalog: InstrumentCatalog) -> None:
    everything = list(catalog.instruments)
    assert [i.iid for i in everything] == list(range(len(catalog)))
    assert catalog.instruments[10:20] == everything[10:20]
    assert catalog.instruments[-1] is everything[-1]
    assert catalog.instruments[5] is catalog.by_iid(5)


def test_instruments_and_chains_survive_pickling(catalog: InstrumentCatalog) -> None:
    # they travel between Ray actors (the launcher hands universes to shards)
    import pickle

    chain = catalog.option_chain("NIFTY", date(2026, 12, 1))
    leg = chain.rows[0].call
    assert leg is not None
    copy = pickle.loads(pickle.dumps(leg))
    assert copy == leg and hash(copy) == hash(leg) and copy.key == leg.key
    copied = pickle.loads(pickle.dumps(chain))
    assert copied == chain and type(copied.rows) is tuple  # made rows travel, never the catalog
    with pytest.raises(AttributeError):
        leg.lot_size = 1  # type: ignore[misc]  # frozen


def test_chain_rows_are_made_when_read_and_then_kept(catalog: InstrumentCatalog) -> None:
    chain = catalog.option_chain("NIFTY", date(2026, 12, 1))
    middle = len(chain.rows) // 2
    row = chain.rows[middle]
    assert chain.rows[middle] is row and chain.rows[-1] is chain.rows[len(chain.rows) - 1]
    assert row.strike == chain.strikes[middle] and row.call is not None and row.put is not None
    assert (row.call.option_type, row.put.option_type) == ("CE", "PE")
    assert row.call.strike == row.put.strike == row.strike and row.call.iid + 1 == row.put.iid
    assert chain.rows[middle : middle + 2] == [row, chain.rows[middle + 1]]
    everything = list(chain.rows)
    assert everything[middle] is row and [r.strike for r in everything] == list(chain.strikes)
    assert chain.instruments() == [leg for r in everything for leg in (r.call, r.put) if leg is not None]
    with pytest.raises(IndexError):
        chain.rows[len(chain.rows)]
    halfway = (chain.strikes[middle] + chain.strikes[middle + 1]) // 2
    assert chain.nearest_strike_index(halfway) == middle  # a tie goes to the lower strike
    assert chain.nearest_strike_index(halfway + 1) == middle + 1


@given(price=st.integers(min_value=-(10**9), max_value=10**10))
def test_the_nearest_strike_is_the_closest_and_the_lower_on_a_tie(
    catalog: InstrumentCatalog, price: int
) -> None:
    chain = catalog.option_chain("NIFTY", date(2026, 12, 1))
    strikes = chain.strikes
    expected = min(range(len(strikes)), key=lambda i: (abs(strikes[i] - price), strikes[i]))
    assert chain.nearest_strike_index(price) == expected
