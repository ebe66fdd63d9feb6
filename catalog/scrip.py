"""Reading Angel's scrip master (`OpenAPIScripMaster.json`, or the same columns as CSV).

Every record is a set of strings: token, symbol, name, expiry (DDMMMYYYY), strike (minor units:
paise, or 1e-7 rupee on CDS), lotsize, instrumenttype, exch_seg, tick_size (paise on every
segment). Parsing is vectorised with polars. A record that cannot become an instrument is
skipped and counted under the reason it failed; bad records never stop a load. A file that is
not a scrip master at all (not JSON or CSV, not an array of records, a field missing from every
record) raises `ScripFormatError`.

The result is a frame in iid order: cash before derivatives, then by exchange, name, expiry,
strike, option type and symbol. The order depends only on the records, never on their order in
the file, so every process that loads the same day's file agrees on every iid, and each option
chain and futures strip is a contiguous run of iids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
import polars as pl

from catalog.instrument import (
    CASH_EXCHANGES,
    CURRENCY_DERIVATIVE_SCALE,
    EQUITY_TYPE,
    EXCHANGES,
    INSTRUMENT_KINDS,
    RUPEE_SCALE,
    InstrumentKind,
)
from catalog.synth import SCRIP_FIELDS
from cluster.errors import ShardlineError

# Columns of the normalised frame, in order.
FRAME_SCHEMA: Final = {
    "exchange": pl.String,
    "token": pl.String,
    "symbol": pl.String,
    "name": pl.String,
    "instrument_type": pl.String,
    "kind": pl.Int8,
    "expiry": pl.Date,
    "strike": pl.Int64,
    "option_type": pl.String,
    "lot_size": pl.Int64,
    "tick_size": pl.Int64,
    "price_scale": pl.Int64,
}

# Skip reasons, in the order they are checked (a record is counted under the first that applies).
MISSING_TOKEN = "missing token"
MISSING_SYMBOL = "missing symbol"
UNKNOWN_EXCHANGE = "unknown exchange segment"
UNKNOWN_TYPE = "unknown instrument type"
TYPE_NOT_ON_EXCHANGE = "instrument type not traded on its exchange"
MISSING_EXPIRY = "missing expiry"
BAD_EXPIRY = "unparsable expiry"
BAD_LOT = "bad lot size"
BAD_TICK = "bad tick size"
BAD_STRIKE = "bad strike"
BAD_OPTION_TYPE = "option symbol not ending in CE/PE"
DUPLICATE_KEY = "duplicate exchange:token"
NOT_A_RECORD = "array element is not a record"
NESTED_VALUE = "record has a nested value"

_PROBLEM = "_problem"  # a column the record-by-record JSON reader adds
_EXAMPLES_PER_REASON = 3
_WHOLE = 1e-6  # how far from a whole minor unit a parsed number may be (float noise only)


class ScripFormatError(ShardlineError):
    """The file is not a scrip master at all (as opposed to containing some bad records)."""


@dataclass
class LoadReport:
    """What a load read, kept and skipped, and why."""

    source: str
    records: int = 0
    loaded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    duplicate_symbols: int = 0  # same symbol twice in a segment: both kept, the symbol finds the first

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line for logs: counts, and the skip reasons when there are any."""
        line = f"{self.source}: {self.loaded} instruments from {self.records} records"
        if self.skipped:
            reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
            line += f"; skipped {self.skipped_total} ({reasons})"
        if self.duplicate_symbols:
            line += f"; {self.duplicate_symbols} repeated symbols"
        return line

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "records": self.records,
            "loaded": self.loaded,
            "skipped": dict(self.skipped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "duplicate_symbols": self.duplicate_symbols,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LoadReport:
        return msgspec.convert(data, cls)


def read_raw(path: Path) -> pl.DataFrame:
    """The records of a scrip master file as a frame of string columns (`SCRIP_FIELDS`).

    JSON (Angel's form) or CSV with the same header; the format is told from the content.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
    except OSError as err:
        raise ScripFormatError(f"{path}: cannot read the scrip master: {err.strerror}") from None
    if not head:
        raise ScripFormatError(f"{path}: the scrip master is empty")
    if head[:1] == b"[":
        return _read_json(path)
    if head[:1] == b"{":
        raise ScripFormatError(f"{path}: expected a JSON array of records, found a single JSON object")
    return _read_csv(path)


def _read_json(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_json(path, schema=dict.fromkeys(SCRIP_FIELDS, pl.String))
    except (pl.exceptions.PolarsError, ValueError, OSError):
        # polars gives up on the whole array for one odd element (null, a list, a nested
        # value); read it record by record instead, so that only those records are skipped
        frame = _read_json_record_by_record(path)
    if frame.height:
        absent = [name for name in SCRIP_FIELDS if frame.get_column(name).null_count() == frame.height]
        if absent:
            raise ScripFormatError(f"{path}: no record has the field(s) {', '.join(absent)}")
    return frame


def _read_json_record_by_record(path: Path) -> pl.DataFrame:
    try:
        items = msgspec.json.decode(path.read_bytes())
    except (msgspec.DecodeError, OSError) as err:
        raise ScripFormatError(f"{path}: not a valid scrip master JSON array ({err})") from None
    if not isinstance(items, list):
        raise ScripFormatError(f"{path}: expected a JSON array of records")
    columns: dict[str, list[str | None]] = {name: [] for name in SCRIP_FIELDS}
    problems: list[str | None] = []
    for item in items:
        problem = None if isinstance(item, dict) else NOT_A_RECORD
        fields = item if isinstance(item, dict) else {}
        for name in SCRIP_FIELDS:
            value = fields.get(name)
            if isinstance(value, dict | list):
                problem, value = problem or NESTED_VALUE, None
            elif value is not None and not isinstance(value, str):
                value = str(value).lower() if isinstance(value, bool) else str(value)
            columns[name].append(value)
        problems.append(problem)
    schema = dict.fromkeys(SCRIP_FIELDS, pl.String)
    return pl.DataFrame(columns, schema=schema).with_columns(pl.Series(_PROBLEM, problems, dtype=pl.String))


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except (pl.exceptions.PolarsError, ValueError, OSError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ScripFormatError(f"{path}: neither a JSON array nor a readable CSV ({detail})") from None
    missing = [name for name in SCRIP_FIELDS if name not in frame.columns]
    if missing:
        raise ScripFormatError(f"{path}: not a scrip master: CSV header lacks {', '.join(missing)}")
    return frame.select(SCRIP_FIELDS)


def _not_whole(column: pl.Expr) -> pl.Expr:
    return (column - column.round(0)).abs() > _WHOLE


def normalise(raw: pl.DataFrame, source: str) -> tuple[pl.DataFrame, LoadReport]:
    """Validate and convert raw string records into the instrument frame, in iid order.

    Parameters
    ----------
    raw : pl.DataFrame
        String columns named as in `SCRIP_FIELDS` (missing values may be null).
    source : str
        Where the records came from, for the report.

    Returns
    -------
    tuple[pl.DataFrame, LoadReport]
        The instruments (columns `FRAME_SCHEMA`) and what was skipped and why.
    """
    kinds = {name: int(kind) for name, kind in INSTRUMENT_KINDS.items()}
    exchange_rank = {name: rank for rank, name in enumerate(EXCHANGES)}
    text = [pl.col(name).cast(pl.String).fill_null("").str.strip_chars().alias(name) for name in SCRIP_FIELDS]
    parsed = (
        raw.lazy()
        .with_row_index("record", offset=1)
        .with_columns(text)
        .with_columns(
            exchange=pl.col("exch_seg").str.to_uppercase(),
            instrument_type=pl.when(pl.col("instrumenttype") == "")
            .then(pl.lit(EQUITY_TYPE))
            .otherwise(pl.col("instrumenttype").str.to_uppercase()),
        )
        .with_columns(
            kind=pl.col("instrument_type").replace_strict(kinds, default=None, return_dtype=pl.Int8),
            exchange_rank=pl.col("exchange").replace_strict(
                exchange_rank, default=None, return_dtype=pl.Int8
            ),
            price_scale=pl.when(pl.col("exchange") == "CDS")
            .then(pl.lit(CURRENCY_DERIVATIVE_SCALE, pl.Int64))
            .otherwise(pl.lit(RUPEE_SCALE, pl.Int64)),
            expiry_date=pl.col("expiry").str.to_date("%d%b%Y", strict=False),
            strike_value=pl.col("strike").cast(pl.Float64, strict=False),
            lot_value=pl.col("lotsize").cast(pl.Float64, strict=False),
            tick_value=pl.col("tick_size").cast(pl.Float64, strict=False),
            option_suffix=pl.col("symbol").str.slice(-2),
        )
        # tick_size is in paise on every segment; CDS prices are in 1e-7 rupee.
        .with_columns(tick_minor=pl.col("tick_value") * pl.col("price_scale") / RUPEE_SCALE)
    )
    is_derivative = pl.col("kind").is_in([int(InstrumentKind.FUTURE), int(InstrumentKind.OPTION)])
    is_option = pl.col("kind") == int(InstrumentKind.OPTION)
    is_index = pl.col("kind") == int(InstrumentKind.INDEX)
    is_equity = pl.col("kind") == int(InstrumentKind.EQUITY)
    on_cash_exchange = pl.col("exchange").is_in(sorted(CASH_EXCHANGES))
    lot = pl.col("lot_value")
    tick = pl.col("tick_minor")
    strike = pl.col("strike_value")
    checks: list[tuple[pl.Expr, str]] = [
        (pl.col("token") == "", MISSING_TOKEN),
        (pl.col("symbol") == "", MISSING_SYMBOL),
        (pl.col("exchange_rank").is_null(), UNKNOWN_EXCHANGE),
        (pl.col("kind").is_null(), UNKNOWN_TYPE),
        ((is_equity & ~on_cash_exchange) | (is_derivative & on_cash_exchange), TYPE_NOT_ON_EXCHANGE),
        (is_derivative & (pl.col("expiry") == ""), MISSING_EXPIRY),
        (is_derivative & pl.col("expiry_date").is_null(), BAD_EXPIRY),
        (lot.is_null() | (lot < 1) | _not_whole(lot), BAD_LOT),
        (tick.is_null() | (~is_index & ((tick < 1) | _not_whole(tick))), BAD_TICK),
        (is_option & (strike.is_null() | (strike <= 0) | _not_whole(strike)), BAD_STRIKE),
        (is_option & ~pl.col("option_suffix").is_in(["CE", "PE"]), BAD_OPTION_TYPE),
    ]
    reason: pl.Expr = pl.lit(None, pl.String)
    for condition, label in reversed(checks):
        reason = pl.when(condition).then(pl.lit(label)).otherwise(reason)
    if _PROBLEM in raw.columns:
        reason = pl.when(pl.col(_PROBLEM).is_not_null()).then(pl.col(_PROBLEM)).otherwise(reason)
    parsed = parsed.with_columns(reason=reason)
    # Of valid records repeating an exchange:token, the first in the file wins.
    valid = pl.col("reason").is_null()
    first_valid = pl.col("record").filter(valid).min().over("exchange", "token")
    frame = parsed.with_columns(
        reason=pl.when(valid & (pl.col("record") != first_valid))
        .then(pl.lit(DUPLICATE_KEY))
        .otherwise(pl.col("reason"))
    ).collect()

    report = LoadReport(source=source, records=frame.height)
    bad = frame.filter(pl.col("reason").is_not_null())
    if bad.height:
        counts = bad.group_by("reason").len()
        report.skipped = dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))
        examples = (
            bad.sort("record")
            .group_by("reason", maintain_order=True)
            .head(_EXAMPLES_PER_REASON)
            .select(
                "reason",
                pl.format("record {} (token '{}', symbol '{}')", "record", "token", "symbol").alias("text"),
            )
        )
        for row_reason, text in examples.iter_rows():
            report.examples.setdefault(row_reason, []).append(text)

    good = (
        frame.lazy()
        .filter(pl.col("reason").is_null())
        .select(
            "exchange",
            "token",
            "symbol",
            pl.when(pl.col("name") == "").then(pl.col("symbol")).otherwise(pl.col("name")).alias("name"),
            "instrument_type",
            "kind",
            pl.when(is_derivative).then(pl.col("expiry_date")).alias("expiry"),
            pl.when(is_option).then(strike.round(0).cast(pl.Int64)).alias("strike"),
            pl.when(is_option).then(pl.col("option_suffix")).alias("option_type"),
            lot.round(0).cast(pl.Int64).alias("lot_size"),
            # Angel lists some indices with a zero tick; index values move in whole minor units.
            pl.when(tick < 1)
            .then(pl.lit(1, pl.Int64))
            .otherwise(tick.round(0).cast(pl.Int64))
            .alias("tick_size"),
            "price_scale",
            "exchange_rank",
        )
        .sort(
            ["kind", "exchange_rank", "name", "expiry", "strike", "option_type", "symbol", "token"],
            nulls_last=False,
        )
        .drop("exchange_rank")
        .collect()
    )
    report.loaded = good.height
    report.duplicate_symbols = good.height - good.select(pl.struct("exchange", "symbol").n_unique()).item()
    return good, report


def read_scrip_master(path: Path) -> tuple[pl.DataFrame, LoadReport]:
    """Read and normalise a scrip master file (JSON or CSV). See `normalise`."""
    return normalise(read_raw(path), str(path))
