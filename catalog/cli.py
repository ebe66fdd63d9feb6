"""`shardline catalog ...` and `shardline bench catalog`."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from cluster.config import load_config
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from catalog.catalog import InstrumentCatalog
    from catalog.refresh import ProgressCallback
    from catalog.store import PhaseCallback

_stderr = Console(stderr=True)
_stdout = Console(highlight=False)
if not _stdout.is_terminal:
    _stdout = Console(highlight=False, width=200)  # piped: do not squeeze symbols into 80 columns

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: $SHARDLINE_CONFIG or config/shardline.yaml)."),
]
PathOption = Annotated[
    Path | None,
    typer.Option("--path", help="Load this scrip master (JSON or CSV) instead of the configured source."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


@contextmanager
def _load_progress(quiet: bool) -> Iterator[PhaseCallback]:
    """A spinner naming the load phase (on stderr, gone when done)."""
    if quiet:
        yield lambda _: None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=_stderr, transient=True) as bar:  # fmt: skip
        task = bar.add_task("catalog: starting", total=None)
        yield lambda phase: bar.update(task, description=f"catalog: {phase}")


@contextmanager
def _download_progress(quiet: bool) -> Iterator[ProgressCallback]:
    """A byte-count progress bar for the scrip master download (on stderr)."""
    if quiet:
        yield lambda _done, _total: None
        return
    columns = (TextColumn("scrip master"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=_stderr, transient=True) as bar:
        task = bar.add_task("download", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _load(path: Path | None, config_path: Path | None, use_cache: bool, quiet: bool) -> InstrumentCatalog:
    from catalog.sources import catalog_store, load_default_catalog
    from catalog.store import load_catalog

    config = load_config(config_path)
    with _load_progress(quiet) as on_phase:
        if path is not None:
            cache_dir = catalog_store(config).cache_dir if use_cache else None
            return load_catalog(path, cache_dir, on_phase)
        with _download_progress(quiet) as progress:
            return load_default_catalog(config, on_phase=on_phase, progress=progress)


def refresh(
    url: Annotated[
        str | None, typer.Option("--url", help="Download from here instead of catalog.url.")
    ] = None,
    config_path: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download the day's scrip master, validate it and keep it as the last good copy."""
    from catalog.refresh import refresh_scrip_master
    from catalog.sources import catalog_store

    config = load_config(config_path)
    with _download_progress(as_json) as progress:
        result = refresh_scrip_master(
            catalog_store(config),
            url or config.catalog.url,
            timeout_s=config.catalog.download_timeout_s,
            min_row_ratio=config.catalog.min_row_ratio,
            now=datetime.now(UTC),
            progress=progress,
        )
    if as_json:
        typer.echo(
            json.dumps({"path": str(result.path), "bytes": result.meta.bytes, **result.report.to_dict()})
        )
        return
    typer.echo(f"{result.report.summary()}")
    typer.echo(f"kept as {result.path} ({result.meta.bytes / 1e6:.1f} MB, sha256 {result.meta.sha256[:16]}…)")


def load(
    path: PathOption = None,
    config_path: ConfigOption = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Parse the file even if a cache entry exists.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Load the catalog and print what it holds: counts per segment and type, skipped records."""
    started = time.perf_counter()
    catalog = _load(path, config_path, not no_cache, as_json)
    elapsed = time.perf_counter() - started
    counts = catalog.counts()
    report = catalog.report
    if as_json:
        typer.echo(json.dumps({"seconds": round(elapsed, 3), "counts": counts, **report.to_dict()}))
        return
    typer.echo(f"{len(catalog)} instruments from {report.source} in {elapsed:.2f}s")
    table = Table()
    table.add_column("exchange")
    table.add_column("type")
    table.add_column("instruments", justify="right")
    for exchange, types in counts.items():
        for itype, count in types.items():
            table.add_row(exchange, itype, f"{count:,}")
    _stdout.print(table)
    if report.skipped:
        typer.echo(f"skipped {report.skipped_total} of {report.records} records:")
        for reason, count in sorted(report.skipped.items(), key=lambda item: -item[1]):
            typer.echo(f"  {count:>7}  {reason}: {'; '.join(report.examples.get(reason, []))}")
    else:
        typer.echo(f"no records skipped of {report.records}")
    if report.duplicate_symbols:
        typer.echo(
            f"{report.duplicate_symbols} symbols repeat within a segment (the first is found by symbol)"
        )


def search(
    text: Annotated[str, typer.Argument(help="Symbol, name or any part of one, e.g. 'sbin' or '23500ce'.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Most results to show.")] = 20,
    path: PathOption = None,
    config_path: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find instruments: exact symbol first, then symbol prefix, then any substring."""
    catalog = _load(path, config_path, True, as_json)
    found = catalog.search(text, limit)
    if as_json:
        rows = [
            {
                "key": i.key,
                "symbol": i.symbol,
                "name": i.name,
                "instrument_type": i.instrument_type,
                "expiry": i.expiry.isoformat() if i.expiry else None,
                "strike": i.to_rupees(i.strike) if i.strike is not None else None,
                "option_type": i.option_type,
                "lot_size": i.lot_size,
                "tick_size": i.to_rupees(i.tick_size),
                "nautilus_id": i.nautilus_id,
            }
            for i in found
        ]
        typer.echo(json.dumps(rows))
        return
    if not found:
        typer.echo(f"nothing matches {text!r}")
        return
    table = Table()
    for column in ("key", "symbol", "name", "type", "expiry", "strike ₹", "lot", "tick ₹"):
        table.add_column(column)
    for i in found:
        strike = i.to_rupees(i.strike) if i.strike is not None else ""
        table.add_row(i.key, i.symbol, i.name, i.instrument_type, str(i.expiry or ""), strike,
                      str(i.lot_size), i.to_rupees(i.tick_size))  # fmt: skip
    _stdout.print(table)


def synth(
    out: Annotated[
        Path, typer.Option("--out", help="File to write (.json: Angel's format; .csv: same columns).")
    ],
    count: Annotated[int, typer.Option("--count", min=1, help="Number of records.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the same seed gives the same file.")] = 7,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Trading day expiries count from: YYYY-MM-DD or 'today' (default: fixed day)."
        ),
    ] = None,
) -> None:
    """Write a synthetic scrip master in Angel's exact format."""
    from catalog.synth import SYNTH_REFERENCE_DATE, synthesize, write_scrip_master

    if as_of is None:
        day = SYNTH_REFERENCE_DATE
    elif as_of == "today":
        from catalog.sources import trading_day

        day = trading_day(datetime.now(UTC))
    else:
        try:
            day = date.fromisoformat(as_of)
        except ValueError:
            raise ShardlineError(f"--as-of {as_of!r}: expected YYYY-MM-DD or 'today'") from None
    rows = synthesize(count, seed, as_of=day)
    write_scrip_master(rows, out)
    typer.echo(f"wrote {len(rows)} records (seed {seed}, expiries from {day}) to {out}")


def bench_catalog(
    count: Annotated[int, typer.Option("--count", min=1, help="Records in the synthetic master.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the master and the sampled lookups.")] = 7,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Where to write the master and cache (default: a temp dir)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Catalog load times, lookup and search latencies, and memory, over a synthetic master."""
    from catalog.bench import run_catalog_bench

    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="shardline-bench-catalog-") as tmp:
            result = run_catalog_bench(count, seed, Path(tmp))
    else:
        result = run_catalog_bench(count, seed, workdir)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key:>24}  {value}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add `shardline catalog ...` and `shardline bench catalog`."""
    catalog_app = typer.Typer(
        help="Instrument catalog: Angel's scrip master, search, synthetic masters.", no_args_is_help=True
    )
    catalog_app.command("refresh")(refresh)
    catalog_app.command("load")(load)
    catalog_app.command("search")(search)
    catalog_app.command("synth")(synth)
    app.add_typer(catalog_app, name="catalog")
    bench_app.command("catalog")(bench_catalog)
