"""Search ranking: exact, then prefix, then substring; cash first; checked against a brute-force oracle."""

from __future__ import annotations

import random
from datetime import date

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.catalog import InstrumentCatalog
from catalog.instrument import InstrumentKind
from catalog.scrip import normalise
from catalog.synth import SCRIP_FIELDS, synthesize


def catalog_of(records: list[dict[str, str]]) -> InstrumentCatalog:
    frame, report = normalise(pl.DataFrame(records, schema=dict.fromkeys(SCRIP_FIELDS, pl.String)), "test")
    return InstrumentCatalog(frame, report)


def oracle(catalog: InstrumentCatalog, text: str, limit: int) -> list[int]:
    """The ranking, spelled out over every instrument."""
    query = text.strip().lower()
    if not query or limit <= 0:
        return []
    ranked = []
    for i in catalog.instruments:
        symbol, name = i.symbol.lower(), i.name.lower()
        cash = i.kind <= InstrumentKind.INDEX
        if symbol == query or (cash and name == query):
            ranked.append((0, i.iid))
        elif symbol.startswith(query):
            ranked.append((1, i.iid))
        elif query in symbol or query in name:
            ranked.append((2, i.iid))
    return [iid for _, iid in sorted(ranked)[:limit]]


@pytest.fixture(scope="module")
def synthetic() -> InstrumentCatalog:
    return catalog_of(synthesize(20_000, seed=11, as_of=date(2026, 11, 26)))


@pytest.mark.parametrize("query", ["sbin", "SBIN", "Sbin", "  sbin  "])
def test_a_company_name_finds_its_nse_share_first(synthetic: InstrumentCatalog, query: str) -> None:
    found = synthetic.search(query, 5)
    assert [(i.exchange, i.symbol) for i in found[:2]] == [("NSE", "SBIN-EQ"), ("BSE", "SBIN")]
    assert all(i.name == "SBIN" for i in found)


def test_cash_comes_before_derivatives_and_near_expiries_first(synthetic: InstrumentCatalog) -> None:
    found = synthetic.search("nifty", 40)
    assert found[0].symbol == "NIFTY 50"  # exact name of a cash instrument
    kinds = [i.kind for i in found[1:]]
    assert kinds == sorted(kinds)
    futures = [i.expiry for i in found if i.expiry and i.kind is InstrumentKind.FUTURE and i.name == "NIFTY"]
    assert futures == sorted(futures) and len(futures) == 3


def test_exact_symbol_beats_prefix_and_substring(synthetic: InstrumentCatalog) -> None:
    option = next(i for i in synthetic.instruments if i.kind is InstrumentKind.OPTION and i.name == "NIFTY")
    found = synthetic.search(option.symbol.lower(), 3)
    assert found[0] is option


def test_substring_finds_strikes_across_underlyings(synthetic: InstrumentCatalog) -> None:
    found = synthetic.search("23500ce", 50)
    assert found and all("23500CE" in i.symbol for i in found)
    assert {i.name for i in found} >= {"NIFTY"}


@pytest.mark.parametrize(
    ("query", "limit"), [("zzqqxx", 10), ("", 10), ("   ", 10), ("sbin", 0), ("a\tb", 5)]
)
def test_nothing_found(synthetic: InstrumentCatalog, query: str, limit: int) -> None:
    assert synthetic.search(query, limit) == []


def test_limit_is_respected(synthetic: InstrumentCatalog) -> None:
    assert len(synthetic.search("a", 7)) == 7
    assert len(synthetic.search("nifty", 1)) == 1


def test_random_queries_rank_as_the_oracle_does(synthetic: InstrumentCatalog) -> None:
    # Queries shaped like what people type, including prefixes shared by thousands of symbols
    # (which go through the range-minimum path) and fragments made of common grams.
    rng = random.Random(5)
    symbols = [i.symbol for i in synthetic.instruments]
    queries = ["n", "ni", "e", "-e", "fut", "ce", "26", "2350", "usd", "&", "m&m", "gold", "q", "7.5"]
    for _ in range(60):
        symbol = rng.choice(symbols)
        start = rng.randrange(len(symbol))
        queries.append(symbol[start : start + rng.randint(1, 9)])
    for query in queries:
        assert [i.iid for i in synthetic.search(query, 25)] == oracle(synthetic, query, 25), query


_ALPHABET = "AB&- 7"


@st.composite
def small_masters(draw: st.DrawFn) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    for n in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["EQ", "AMXIDX", "FUTSTK", "OPTSTK"]))
        name = draw(st.text(_ALPHABET, min_size=1, max_size=4)).strip() or "A"
        suffix = draw(st.text(_ALPHABET, min_size=0, max_size=4))
        derivative = kind in ("FUTSTK", "OPTSTK")
        symbol = name + suffix + ("CE" if kind == "OPTSTK" else "")
        records.append(
            {
                "token": str(n),
                "symbol": symbol,
                "name": name,
                "expiry": draw(st.sampled_from(["28JUL2026", "25AUG2026"])) if derivative else "",
                "strike": f"{draw(st.integers(1, 9)) * 100}.000000" if kind == "OPTSTK" else "-1.000000",
                "lotsize": "1",
                "instrumenttype": "" if kind == "EQ" else kind,
                "exch_seg": draw(st.sampled_from(["NSE", "BSE"])) if not derivative else "NFO",
                "tick_size": "5.000000",
            }
        )
    return records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=small_masters(), query=st.text(_ALPHABET + "ce", min_size=1, max_size=5), limit=st.integers(1, 12)
)
def test_search_matches_the_oracle_on_any_small_master(
    records: list[dict[str, str]], query: str, limit: int
) -> None:
    catalog = catalog_of(records)
    assert [i.iid for i in catalog.search(query, limit)] == oracle(catalog, query, limit)


@pytest.mark.parametrize(
    ("sizes", "chosen"),
    [
        ([7], [0]),
        ([9, 3, 8], [1, 2, 0]),  # nothing is far enough apart: the rarest of the rest
        ([515, 515, 515, 535, 533, 4482, 4614, 2052, 855, 54512, 35236, 4038], [0, 4, 8, 11]),
        ([50, 1, 50, 50, 50, 50, 2], [1, 6, 0, 2]),  # 1 and 6 apart, then the rarest left
    ],
)
def test_narrowing_prefers_rare_grams_from_different_parts_of_the_query(
    sizes: list[int], chosen: list[int]
) -> None:
    from catalog.search import _narrowing_grams

    assert _narrowing_grams(sizes) == chosen
