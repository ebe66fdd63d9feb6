"""`shardline bench ui`: the terminal's price path measured in a real browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from serve.bench import UiBenchConfig, run_ui_bench


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("ui")
    def bench_ui(
        symbols: Annotated[int, typer.Option("--symbols", help="instruments in the watchlist")] = 50,
        rate: Annotated[float, typer.Option("--rate", help="updates per instrument per second")] = 20.0,
        seconds: Annotated[float, typer.Option("--seconds", help="measured duration")] = 20.0,
        warmup: Annotated[float, typer.Option("--warmup", help="seconds before measuring")] = 3.0,
        screenshot: Annotated[Path | None, typer.Option("--screenshot", help="save a PNG at the end")] = None,
        clients: Annotated[
            int, typer.Option("--clients", help="WebSocket clients on the replica afterwards; 0: none")
        ] = 100,
        client_symbols: Annotated[
            int, typer.Option("--client-symbols", help="instruments each client watches")
        ] = 10,
        config_path: Annotated[Path | None, typer.Option("--config", help="config file")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Price update to painted in headless Chromium at SYMBOLS × RATE updates a second, then the
        lag to CLIENTS concurrent WebSocket clients on the same replica."""
        result = run_ui_bench(
            UiBenchConfig(
                symbols=symbols,
                rate_hz=rate,
                seconds=seconds,
                warmup_s=warmup,
                config_path=config_path,
                screenshot=screenshot,
                clients=clients,
                client_symbols=client_symbols,
            )
        )
        if as_json:
            typer.echo(json.dumps(result))
            return
        latency = result["arrival_to_painted_ms"]
        frame = result["dom_write_per_frame_ms"]
        typer.echo(
            f"{result['updates_handled_per_s']:.0f} updates/s handled "
            f"of {result['published_per_s']:.0f}/s published; "
            f"arrival→painted p50 {latency['p50']} ms p99 {latency['p99']} ms; "
            f"DOM writes per frame p99 {frame['p99']} ms"
        )
        if result["clients"]:
            load = result["clients"]
            received, offered = load["updates_received_per_s"], load["offered_updates_per_s"]
            lag = load["lag_ms"]
            typer.echo(
                f"{load['clients']} clients × {load['symbols_each']} instruments: "
                f"{received:.0f} updates/s received of {offered:.0f}/s; "
                f"lag p50 {lag['p50']} ms p99 {lag['p99']} ms; CPU % {load['cpu_percent']}"
            )
