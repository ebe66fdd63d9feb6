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
        config_path: Annotated[Path | None, typer.Option("--config", help="config file")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Price update to painted in headless Chromium, at SYMBOLS × RATE updates a second."""
        result = run_ui_bench(
            UiBenchConfig(
                symbols=symbols,
                rate_hz=rate,
                seconds=seconds,
                warmup_s=warmup,
                config_path=config_path,
                screenshot=screenshot,
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
