"""`shardline up | down | status`: run the system and see it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cluster.config import load_config

ConfigOption = Annotated[
    str | None, typer.Option("--config", "-c", help="Config file (default: config/shardline.yaml).")
]
AddressOption = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address ('auto' for the running one; default: local)."),
]


def up(
    config: ConfigOption = None,
    address: AddressOption = None,
    dashboard: Annotated[bool, typer.Option(help="Run the Ray dashboard (needed by the Jobs API).")] = True,
    terminal: Annotated[bool, typer.Option(help="Serve the web terminal.")] = True,
) -> None:
    """Start the system on the config's embedded default (local Ray, simulator, paper trading)."""
    from cluster import launcher

    cfg = load_config(config)
    typer.echo(f"shardline up: mode {cfg.mode.value}, {len(cfg.deployments)} deployment(s)")
    state = launcher.up(
        cfg, address, dashboard=dashboard, serve_terminal=terminal, progress=lambda m: typer.echo(f"  … {m}")
    )
    typer.echo(f"started {len(state['actors'])} actors: {', '.join(state['actors'])}")
    if state["serve_url"]:
        typer.echo(f"terminal: {state['serve_url']}  (local users: see README; e.g. trader / trader-local)")
    typer.echo("see it with `shardline status`; stop it with `shardline down`")


def down(
    config: ConfigOption = None,
    address: AddressOption = None,
    stop_ray: Annotated[
        bool | None, typer.Option("--stop-ray/--keep-ray", help="Also stop the local Ray head.")
    ] = None,
) -> None:
    """Stop the terminal and every shardline actor (and the local Ray head `up` started)."""
    from cluster import launcher

    stopped = launcher.down(load_config(config), address, stop_ray)
    typer.echo(f"stopped {len(stopped)} actors" + (f": {', '.join(stopped)}" if stopped else ""))


def status(
    address: AddressOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Every actor with its node, restarts, rates and lag; readiness of the whole."""
    from cluster import launcher

    doc = launcher.status(address)
    if as_json:
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    _print_status(doc)
    if not doc["ready"]["ready"]:
        raise typer.Exit(1)


def _print_status(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ready = doc["ready"]
    word = "[green]ready[/green]" if ready["ready"] else "[red]not ready[/red]"
    console.print(f"shardline {word} · mode {doc['mode']} · up {doc['uptime_s']} s · {doc['serve_url']}")
    table = Table("actor", "kind", "healthy", "node", "pid", "restarts", "rates /s", "note")
    for a in doc["actors"]:
        rates = ", ".join(f"{k} {v:,.0f}" for k, v in a["rates"].items())
        note = a["error"] or _note(a)
        table.add_row(
            a["name"], a["kind"], "yes" if a["healthy"] else "[red]no[/red]", a["node"],
            str(a["pid"] or ""), str(a["restarts"]), rates, note,
        )  # fmt: skip
    console.print(table)
    checks = ", ".join(f"{k} {'ok' if v else 'NOT OK'}" for k, v in ready["checks"].items())
    console.print(f"readiness: {checks}")


def _note(actor: dict[str, Any]) -> str:
    stats = actor.get("stats", {})
    if actor["kind"] == "shard":
        return f"state {stats.get('state', '?')}, orders {stats.get('orders_sent', 0)}"
    if actor["kind"] == "router":
        return f"balanced {stats.get('balanced', '?')}, buffered {stats.get('buffered', 0)}"
    return str(stats.get("state", ""))


def bench_ticks(
    rate: Annotated[int, typer.Option(min=1, help="Offered ticks/s across all instruments.")] = 100_000,
    seconds: Annotated[float, typer.Option(min=1, help="Measured window, after warm-up.")] = 60,
    instruments: Annotated[int, typer.Option(min=1, max=3000)] = 1000,
    shards: Annotated[int, typer.Option(min=1, max=16)] = 2,
    inject: Annotated[
        str | None, typer.Option(help="'router': skip the socket and feed, push into the router.")
    ] = None,
    baseline: Annotated[bool, typer.Option(help="Also run one bare Nautilus node without Ray.")] = False,
    flow: Annotated[str, typer.Option(help="block | conflate")] = "block",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The whole tick path (simulator → feed → router → shards) at a rate, on a private local Ray."""
    from cluster import bench_ticks as bench

    if inject not in (None, "router"):
        raise typer.BadParameter("--inject takes only 'router'")
    result = bench.run(rate, seconds, instruments, shards, inject, baseline, flow)
    typer.echo(json.dumps(result, indent=None if as_json else 2))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
    bench_app.command("ticks")(bench_ticks)
