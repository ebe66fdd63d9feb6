"""`shardline record | candles fetch | backtest` and `shardline bench record | backtest`.

The research loop: record what the market (or the simulator) sends, fetch historical candles,
and run a deployment's strategy over both on Nautilus's BacktestEngine, with a report.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cluster.config import load_config
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from actors.angel.factories import AngelConnection
    from cluster.config import ShardlineConfig

candles_app = typer.Typer(help="Historical candles into the data catalog.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: $SHARDLINE_CONFIG or config/shardline.yaml)."),
]
CatalogOption = Annotated[
    Path | None,
    typer.Option("--catalog", help="The Nautilus data catalog (default: <data_dir>/catalog)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _catalog_path(config: ShardlineConfig, given: Path | None) -> Path:
    return (given if given is not None else config.data_path / "catalog").resolve()


def _split(values: list[str] | None) -> list[str]:
    """Repeated options and comma-separated lists alike: ["A,B", "C"] -> ["A", "B", "C"]."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def _echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


# ----------------------------------------------------------------------------------- record


def record(
    seconds: Annotated[float, typer.Option("--seconds", help="How long to record.")],
    instruments: Annotated[
        list[str] | None,
        typer.Option(
            "--instruments",
            help="Instruments to record (EXCH:SYMBOL or EXCH:token; repeat or comma-separate). "
            "Default: every instrument the configured deployments trade.",
        ),
    ] = None,
    deployment: Annotated[
        Path | None,
        typer.Option(
            "--deployment", "-d", help="Record this deployment spec's universe (with --instruments too)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="The data catalog to write (default: <data_dir>/catalog).")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (default: the running local one).")
    ] = None,
    config_path: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record the running cluster's ticks into a Nautilus data catalog (and a raw file to replay)."""
    from rich.console import Console

    from cluster import record as recording

    config = load_config(config_path)
    catalog = _catalog_path(config, out)
    wanted = _split(instruments)
    if deployment is not None:
        from catalog.sources import load_default_catalog
        from cluster.deployments import load_deployment_spec, resolve_universe

        spec = load_deployment_spec(deployment)
        wanted += [i.key for i in resolve_universe(spec, load_default_catalog(config))]
    console = Console(stderr=True)
    with console.status("recording …") as status:
        summary = recording.record(
            config,
            seconds,
            catalog,
            wanted,
            address,
            on_progress=lambda elapsed, rows: status.update(f"recording: {elapsed:.0f} s, {rows:,} ticks"),
        )
    if as_json:
        _echo_json(summary.as_dict())
        return
    typer.echo(
        f"recorded {summary.rows:,} ticks of {summary.instruments} instruments: "
        f"{summary.trade_ticks:,} trade ticks, {summary.quote_ticks:,} quote ticks"
    )
    typer.echo(f"catalog: {summary.catalog_path}")
    typer.echo(f"raw ticks (for `shardline sim --replay`): {summary.raw_path}")
    if summary.silent:
        silent = ", ".join(summary.silent[:10])
        typer.echo(
            f"warning: no ticks came for {len(summary.silent)} instrument(s): {silent}"
            " (in sim mode the simulator quotes only the instruments it started with)"
        )
    route = summary.route
    if route.get("dropped") or route.get("conflated"):
        typer.echo(f"warning: {route['dropped']} ticks dropped, {route['conflated']} conflated on the way")


# ----------------------------------------------------------------------------------- candles


@contextmanager
def _broker(config: ShardlineConfig, key: str) -> Iterator[AngelConnection]:
    """Angel's REST connection for the config's mode: the broker in paper/live, a private simulator
    (the same candles as the cluster's, a pure function of seed and instrument) in sim modes."""
    from actors.angel.auth import AngelCredentials
    from actors.angel.factories import AngelEndpoints, connect, connect_from_config
    from cluster.config import Mode, Secrets

    if config.mode not in (Mode.SIM, Mode.SIM_LIVE):
        yield connect_from_config(config, Secrets())
        return
    from actors.sim.actor import simulated_instruments
    from actors.sim.server import SimServer

    with SimServer(config.sim, simulated_instruments(config, [key])).run_in_thread() as sim:
        endpoints = AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url)
        yield connect(AngelCredentials.for_simulator(config.sim), endpoints, config.data_path)


@candles_app.command("fetch")
def candles_fetch(
    instrument: Annotated[
        str, typer.Option("--instrument", help="EXCH:SYMBOL or EXCH:token, e.g. NSE:SBIN-EQ.")
    ],
    start: Annotated[
        str, typer.Option("--from", help="First day (2026-01-01) or minute (2026-01-01 09:15), IST.")
    ],
    end: Annotated[str, typer.Option("--to", help="Last day or minute, IST (a day includes all of it).")],
    interval: Annotated[
        str, typer.Option("--interval", help="ONE_MINUTE, THREE_MINUTE, ... ONE_HOUR, ONE_DAY.")
    ] = "ONE_MINUTE",
    catalog_option: CatalogOption = None,
    config_path: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch historical candles into the data catalog as Nautilus bars; resumes where it stopped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from catalog.sources import load_default_catalog
    from cluster.candles import IST, FetchSummary, fetch_candles, parse_day, parse_interval
    from cluster.record import resolve_keys

    config = load_config(config_path)
    chosen = parse_interval(interval)
    first, last = parse_day(start), parse_day(end, end=True)
    catalog = load_default_catalog(config)
    (key,) = resolve_keys(catalog, [instrument], "--instrument")
    from actors.shard.universe import ShardInstrument

    target = ShardInstrument.from_catalog(catalog.get(key))
    path = _catalog_path(config, catalog_option)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        _broker(config, key) as connection,
        Progress(*columns, console=Console(stderr=True), transient=True, disable=as_json) as bar,
    ):
        task = bar.add_task(f"{target.instrument_id} {chosen.value}", total=None)

        def on_window(done: int, total: int, window: tuple[datetime, datetime], what: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{what} {window[0]:%Y-%m-%d}")

        async def fetch() -> FetchSummary:
            try:
                now = datetime.now(IST).replace(tzinfo=None)
                return await fetch_candles(connection.rest, path, target, chosen, first, last, now, on_window)
            finally:
                await connection.close()

        summary = asyncio.run(fetch())
    if as_json:
        _echo_json({**summary.as_dict(), "catalog": str(path)})
        return
    typer.echo(
        f"{summary.bar_type}: {summary.windows} window(s), {summary.fetched} fetched, {summary.skipped} "
        f"already there; {summary.bars_written:,} new bars in {path}"
    )


# ----------------------------------------------------------------------------------- backtest


def backtest(
    spec_path: Annotated[Path, typer.Argument(help="The deployment spec YAML (as for `shardline submit`).")],
    start: Annotated[str, typer.Option("--from", help="First day (2026-03-02, today) or moment, IST.")],
    end: Annotated[str, typer.Option("--to", help="Last day (included) or moment, IST.")],
    catalog_option: CatalogOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="The report directory (default: reports/<deployment name>).")
    ] = None,
    period: Annotated[
        float | None, typer.Option("--period", help="Equity sampling period in seconds (default: chosen).")
    ] = None,
    config_path: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a deployment's strategy over the data catalog on Nautilus's BacktestEngine; write a report."""
    from cluster.backtest import build_report, parse_window, run_backtest
    from cluster.backtest_report import write_report
    from cluster.deployments import load_deployment_spec

    config = load_config(config_path)
    spec = load_deployment_spec(spec_path)
    # The strategy's module may sit beside its spec, as `shardline submit` ships that directory.
    sys.path.insert(0, str(spec_path.resolve().parent))
    if period is not None and period <= 0:
        raise ShardlineError(f"--period must be positive, not {period}")
    start_ns, end_ns = parse_window(start, end)
    run = run_backtest(spec, config, _catalog_path(config, catalog_option), start_ns, end_ns)
    report = build_report(run, spec.name, period)
    paths = write_report(report, out if out is not None else Path("reports") / spec.name)
    if as_json:
        _echo_json(
            {
                "stats": report.stats.as_dict(),
                "data": report.data,
                "engine_seconds": round(run.seconds, 3),
                "files": {k: str(v) for k, v in paths.items()},
            }
        )
        return
    s = report.stats
    universe = f"{len(run.instruments)} instrument(s)"
    typer.echo(f"{spec.name}: {spec.strategy} on {universe}, {run.data_items:,} data points")
    typer.echo(
        f"  net P&L ₹{s.net_pnl:,} ({s.total_return * 100:.3f}%), charges ₹{s.charges:,}, "
        f"max drawdown ₹{s.max_drawdown:,} ({s.max_drawdown_pct * 100:.3f}%)"
    )
    sharpe = "n/a" if s.sharpe is None else f"{s.sharpe:.2f}"
    win_rate = "n/a" if s.win_rate is None else f"{s.win_rate * 100:.1f}%"
    typer.echo(f"  {len(run.orders)} orders, {s.trades} round trips, win rate {win_rate}, Sharpe {sharpe}")
    typer.echo(f"report: {paths['html']}")


# ----------------------------------------------------------------------------------- benchmarks


def _bench_ticks(rows: int, instruments: int, seed: int = 7) -> tuple[list[Any], Any]:
    from actors.shard.baseline import random_walk_ticks
    from actors.shard.universe import ShardInstrument
    from actors.ticks import FeedMode

    universe = [ShardInstrument.equity(i, f"BENCH{i}-EQ", str(5000 + i)) for i in range(instruments)]
    return universe, random_walk_ticks(universe, rows, seed=seed, mode=FeedMode.SNAP_QUOTE)


def bench_record(
    rows: Annotated[int, typer.Option("--rows", help="Ticks to record.")] = 400_000,
    instruments: Annotated[int, typer.Option("--instruments")] = 50,
    batch: Annotated[int, typer.Option("--batch", help="Rows per delivered batch.")] = 4096,
    as_json: JsonOption = False,
) -> None:
    """Recorder throughput: raw writes as batches arrive, then the conversion into the catalog."""
    from cluster.record import TickRecording, import_ticks

    if rows < 1 or instruments < 1 or batch < 1:
        raise ShardlineError("--rows, --instruments and --batch must be positive")
    universe, ticks = _bench_ticks(rows, instruments)
    with tempfile.TemporaryDirectory(prefix="shardline-bench-record-") as tmp:
        recording = TickRecording(universe, Path(tmp), "bench")
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, rows, batch):
            recording.write(ticks[start : start + batch])
        recording.close(import_to_catalog=False)
        write_s, write_cpu = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        counts = import_ticks(recording.raw_path, Path(tmp), universe)
        import_s, import_cpu = time.perf_counter() - started, time.process_time() - cpu
        raw_bytes = recording.raw_path.stat().st_size
    result = {
        "rows": rows,
        "instruments": instruments,
        "batch": batch,
        "raw_write_rows_per_s": round(rows / write_s),
        "raw_write_rows_per_cpu_s": round(rows / write_cpu) if write_cpu else None,
        "raw_bytes_per_row": round(raw_bytes / rows, 1),
        "import_rows_per_s": round(rows / import_s),
        "import_rows_per_cpu_s": round(rows / import_cpu) if import_cpu else None,
        "trade_ticks": counts["trade_ticks"],
        "quote_ticks": counts["quote_ticks"],
    }
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def bench_backtest(
    rows: Annotated[int, typer.Option("--rows", help="Ticks in the catalog.")] = 100_000,
    instruments: Annotated[int, typer.Option("--instruments")] = 10,
    strategy: Annotated[str, typer.Option("--strategy")] = "actors.shard.strategies.ema_cross:EMACross",
    config_json: Annotated[
        str, typer.Option("--strategy-config", help="The strategy's config as JSON.")
    ] = "{}",
    as_json: JsonOption = False,
) -> None:
    """Backtest throughput over a recorded catalog: data points per second, and the report's cost."""
    from cluster.backtest import build_report, run_backtest
    from cluster.backtest_report import write_report
    from cluster.config import DeploymentConfig, UniverseConfig, parse_config
    from cluster.record import TickRecording

    try:
        strategy_config = json.loads(config_json)
    except json.JSONDecodeError as err:
        raise ShardlineError(f"--strategy-config is not valid JSON: {err}") from None
    universe, ticks = _bench_ticks(rows, instruments)
    with tempfile.TemporaryDirectory(prefix="shardline-bench-backtest-") as tmp:
        catalog = Path(tmp) / "catalog"
        recording = TickRecording(universe, catalog, "bench")
        recording.write(ticks)
        recording.close()
        spec = DeploymentConfig(
            name="bench",
            strategy=strategy,
            config=strategy_config,
            universe=UniverseConfig(instruments=[i.key for i in universe]),
        )
        settings = parse_config({"data_dir": str(Path(tmp) / "data")})
        started, cpu = time.perf_counter(), time.process_time()
        run = run_backtest(spec, settings, catalog, 0, 2**62, instruments=[i.instrument for i in universe])
        total_s, total_cpu = time.perf_counter() - started, time.process_time() - cpu
        started = time.perf_counter()
        write_report(build_report(run, "bench"), Path(tmp) / "report")
        report_s = time.perf_counter() - started
    result = {
        "strategy": strategy,
        "rows": rows,
        "instruments": instruments,
        "data_points": run.data_items,
        "orders": len(run.orders),
        "fills": len(run.fills),
        "engine_seconds": round(run.seconds, 3),
        "engine_points_per_s": round(run.data_items / run.seconds) if run.seconds else None,
        "load_and_run_seconds": round(total_s, 3),
        "load_and_run_points_per_cpu_s": round(run.data_items / total_cpu) if total_cpu else None,
        "report_seconds": round(report_s, 3),
    }
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("record")(record)
    app.command("backtest")(backtest)
    app.add_typer(candles_app, name="candles")
    bench_app.command("record")(bench_record)
    bench_app.command("backtest")(bench_backtest)
