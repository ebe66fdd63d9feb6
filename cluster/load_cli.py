"""`shardline chaos` and `shardline bench all`: proof under faults, and the whole benchmark suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def chaos(
    seconds: Annotated[
        float, typer.Option(min=10, help="Length of the loaded run (faults spread over it).")
    ] = 120,
    faults: Annotated[
        str,
        typer.Option(
            help="In order, comma-separated: feed, router, shard, execution, portfolio, serve, sockets."
        ),
    ] = "all",
    order_rate: Annotated[float, typer.Option(min=0.1, help="Orders per second through REST.")] = 20.0,
    tick_rate: Annotated[int, typer.Option(min=1, help="Ticks per second from the simulator.")] = 2000,
    target: Annotated[float, typer.Option(help="Recovery time each fault is held to, seconds.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Kill each part in turn under tick and order load on a private system; then account for
    every order and tick, and time each recovery. Exits 1 when the verdict fails."""
    from cluster.chaos import ChaosConfig, parse_faults, run

    config = ChaosConfig(
        seconds=seconds,
        faults=parse_faults(faults),
        order_rate_per_s=order_rate,
        tick_rate=tick_rate,
        target_recovery_s=target,
    )
    result = run(config)
    typer.echo(json.dumps(result, indent=None if as_json else 2, default=str))
    if not result["verdict"]["passed"]:
        raise typer.Exit(1)


def bench_all(
    quick: Annotated[bool, typer.Option(help="A small matrix and short runs (minutes, not hours).")] = False,
    write_docs: Annotated[
        bool, typer.Option("--write-docs/--no-write-docs", help="Write the figures into docs/benchmarks.md.")
    ] = True,
    only: Annotated[str | None, typer.Option(help="Comma-separated subset of the suite's parts.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The suite: catalog, feed, ticks (rate × shards × instruments), orders, swap, ui, chaos and
    the many-deployments probe; figures, a plot and a scaling table into docs/benchmarks.md."""
    from cluster.bench_all import SuitePlan, run_suite

    plan = SuitePlan.quick() if quick else SuitePlan.full()
    if only:
        plan = plan.restricted_to(only.split(","))
    result = run_suite(plan, write_docs=write_docs, progress=lambda m: typer.echo(m, err=True))
    text = json.dumps(result, indent=None if as_json else 2, default=str)
    if out is not None:
        out.write_text(text)
    typer.echo(text)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("chaos")(chaos)
    bench_app.command("all")(bench_all)
