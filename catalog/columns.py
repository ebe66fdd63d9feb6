"""What an `InstrumentCatalog` is built from: an instrument's fields as compact columns.

Every actor loads the catalog, and most only resolve tokens and symbols. Reading these columns
from the cache needs no polars: a warm load decodes one msgpack file into two lists of strings
(tokens and symbols, which the lookup dicts and the instruments share), the short lists that
codes index, and one packed record per iid. The polars frame stays on disk until something asks
for it (universe selection, the first search over a file nobody has searched), which spares a
process the frame and polars' own allocator, together more than half of what the catalog used
to cost.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import numpy as np
import polars as pl

from catalog.instrument import EXCHANGES, InstrumentKind
from cluster.errors import ShardlineError

NO_DATE = -(2**31)  # in the expiry field (days since 1970-01-01): no expiry
NO_STRIKE = -1  # strikes are positive

# An instrument's fields other than its strings, one packed record per iid; the code fields
# index the lists of the same name in `CatalogColumns`.
ROW = np.dtype(
    [
        ("exchange", np.int8),
        ("name", np.int32),
        ("instrument_type", np.int8),
        ("expiry", np.int32),
        ("strike", np.int64),
        ("option_type", np.int8),
        ("lot_size", np.int32),
        ("tick_size", np.int32),
        ("price_scale", np.int32),
        ("kind", np.int8),
    ]
)
ROW_FIELDS: tuple[str, ...] = tuple(ROW.fields or ())
# The same record for one-at-a-time reads, made from `ROW` (packed, little-endian, signed ints):
# `unpack_from` on the bytes is twice as fast as numpy's `item` on the array, and a first look-up
# makes its instrument from one such read.
ROW_STRUCT = struct.Struct("<" + "".join({1: "b", 4: "i", 8: "q"}[ROW[f].itemsize] for f in ROW_FIELDS))

_EXCHANGE_RANK = {exchange: rank for rank, exchange in enumerate(EXCHANGES)}


class CatalogColumns(msgspec.Struct, frozen=True):
    """A normalised frame's instruments in iid order, in the shape the catalog indexes.

    Parameters
    ----------
    tokens, symbols : list[str]
        Angel's token and trading symbol of each iid.
    exchanges, names, instrument_types, option_types : list[str]
        The distinct values the code fields of `rows` index ("" for no option type).
    spot_of : dict[str, int]
        An underlying's name -> iid of its cash instrument or index (NSE first, the EQ series
        first).
    rows : bytes
        One `ROW` record per iid.
    """

    tokens: list[str]
    symbols: list[str]
    exchanges: list[str]
    names: list[str]
    instrument_types: list[str]
    option_types: list[str]
    spot_of: dict[str, int]
    rows: bytes

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if len(self.symbols) != n or len(self.rows) != n * ROW.itemsize:
            raise ShardlineError(
                f"catalog columns disagree: {n} tokens, {len(self.symbols)} symbols, "
                f"{len(self.rows) / ROW.itemsize:g} records"
            )

    def records(self) -> np.ndarray:
        """The `ROW` records, read-only, over `rows` without a copy."""
        return np.frombuffer(self.rows, dtype=ROW)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> CatalogColumns:
        """The columns of a normalised frame (see `catalog.scrip.normalise`)."""
        exchanges, exchange_codes = _codes(frame.get_column("exchange"))
        names, name_codes = _codes(frame.get_column("name"))
        types, type_codes = _codes(frame.get_column("instrument_type"))
        option_types, option_type_codes = _codes(frame.get_column("option_type"))
        rows = np.empty(frame.height, dtype=ROW)
        fields: dict[str, np.ndarray] = {
            "exchange": exchange_codes,
            "name": name_codes,
            "instrument_type": type_codes,
            "expiry": frame.get_column("expiry").cast(pl.Int32).fill_null(NO_DATE).to_numpy(),
            "strike": frame.get_column("strike").fill_null(NO_STRIKE).to_numpy(),
            "option_type": option_type_codes,
            **{f: frame.get_column(f).to_numpy() for f in ("lot_size", "tick_size", "price_scale", "kind")},
        }
        for field, values in fields.items():
            rows[field] = _narrowed(values, ROW[field], field)
        return cls(
            tokens=frame.get_column("token").to_list(),
            symbols=frame.get_column("symbol").to_list(),
            exchanges=exchanges,
            names=names,
            instrument_types=types,
            option_types=option_types,
            spot_of=_spots(frame),
            rows=rows.tobytes(),
        )

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> CatalogColumns:
        """Columns from `encode`'s bytes; msgspec checks every field's type as it decodes."""
        return msgspec.msgpack.decode(data, type=cls)


def _spots(frame: pl.DataFrame) -> dict[str, int]:
    spots = (
        frame.lazy()
        .with_row_index("iid")
        .filter(pl.col("kind") <= int(InstrumentKind.INDEX))
        # NSE before BSE; on NSE the EQ series before others (-BE, bonds)
        .with_columns(
            exchange_rank=pl.col("exchange").replace_strict(_EXCHANGE_RANK, return_dtype=pl.Int8),
            not_eq=~pl.col("symbol").str.ends_with("-EQ"),
        )
        .sort("exchange_rank", "not_eq", "iid")
        .unique("name", keep="first", maintain_order=True)
        .select("name", pl.col("iid").cast(pl.Int64))
        .collect()
    )
    return dict(zip(spots.get_column("name").to_list(), spots.get_column("iid").to_list(), strict=True))


def _codes(column: pl.Series) -> tuple[list[str], np.ndarray]:
    """Distinct values and, per row, the index of its value (names repeat across a chain)."""
    column = column.fill_null("")
    distinct = column.unique(maintain_order=True)
    # an Enum's physical codes index its categories; the lightest way polars has to number them
    codes = column.cast(pl.Enum(distinct)).to_physical().cast(pl.Int32)
    return distinct.to_list(), codes.to_numpy()


def _narrowed(values: np.ndarray, dtype: np.dtype[Any], field: str) -> np.ndarray:
    """`values` as `dtype`, refusing a value the narrower type would silently wrap."""
    limits = np.iinfo(dtype)
    if values.size and (values.min() < limits.min or values.max() > limits.max):
        raise ShardlineError(f"catalog: a {field} outside {limits.min}..{limits.max} cannot be indexed")
    return values.astype(dtype, copy=False)
