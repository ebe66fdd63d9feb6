"""The columns a catalog is built from: they survive the cache byte for byte, and refuse what
they cannot hold instead of wrapping it."""

from __future__ import annotations

from pathlib import Path

import msgspec
import polars as pl
import pytest

from catalog.catalog import InstrumentCatalog
from catalog.columns import CatalogColumns
from catalog.scrip import read_scrip_master
from cluster.errors import ShardlineError

SAMPLE_JSON = (
    Path(__file__).resolve().parent.parent / "resources" / "scrip" / "OpenAPIScripMaster.sample.json"
)


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    frame, _ = read_scrip_master(SAMPLE_JSON)
    return frame


def test_columns_round_trip_and_build_the_same_catalog(frame: pl.DataFrame) -> None:
    _, report = read_scrip_master(SAMPLE_JSON)
    columns = CatalogColumns.from_frame(frame)
    decoded = CatalogColumns.decode(columns.encode())
    assert decoded == columns
    from_frame = InstrumentCatalog(frame, report)
    from_columns = InstrumentCatalog(lambda: frame, report, columns=decoded)
    assert list(from_columns.instruments) == list(from_frame.instruments)
    assert from_columns.spot("NIFTY") == from_frame.spot("NIFTY")
    assert from_columns.spot("NIFTY") is not None and from_columns.spot("NIFTY").symbol == "NIFTY 50"


def test_a_catalog_read_later_needs_its_columns_now(frame: pl.DataFrame) -> None:
    _, report = read_scrip_master(SAMPLE_JSON)
    with pytest.raises(TypeError, match="needs its columns"):
        InstrumentCatalog(lambda: frame, report)


def test_columns_that_disagree_in_length_are_refused(frame: pl.DataFrame) -> None:
    fields = msgspec.structs.asdict(CatalogColumns.from_frame(frame))
    for damage in ({"symbols": fields["symbols"][:-1]}, {"rows": fields["rows"][:-3]}):
        with pytest.raises((ShardlineError, msgspec.ValidationError), match="columns disagree"):
            CatalogColumns.decode(msgspec.msgpack.encode({**fields, **damage}))


def test_a_value_too_wide_for_its_field_is_refused_not_wrapped(frame: pl.DataFrame) -> None:
    huge_lot = frame.with_columns(
        lot_size=pl.when(pl.col("token") == "3045").then(2**40).otherwise("lot_size")
    )
    with pytest.raises(ShardlineError, match=r"a lot_size outside .* cannot be indexed"):
        CatalogColumns.from_frame(huge_lot)


def test_an_instrument_made_alone_equals_one_made_in_a_run(frame: pl.DataFrame) -> None:
    # A look-up reads one record with `struct`, a chain reads columns with numpy: the same fields.
    _, report = read_scrip_master(SAMPLE_JSON)
    alone, in_runs = InstrumentCatalog(frame, report), InstrumentCatalog(frame, report)
    assert [alone.by_iid(iid) for iid in range(len(alone))] == list(in_runs.instruments)
    assert any(i.expiry is not None and i.strike is not None for i in in_runs.instruments)
