"""`shardline bench feed`: SmartStream client throughput over loopback, and pure decode speed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cluster.errors import ShardlineError

RECEIVE_PATHS = ("raw", "aiohttp", "websockets")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("feed")
    def bench_feed(
        rate: Annotated[int, typer.Option("--rate", help="ticks per second the simulator sends")] = 100_000,
        seconds: Annotated[
            float, typer.Option("--seconds", help="how long to measure (after 1 s warm-up)")
        ] = 10.0,
        instruments: Annotated[
            int, typer.Option("--instruments", help="instruments subscribed (1000 per socket, up to 3000)")
        ] = 1000,
        mode: Annotated[str, typer.Option("--mode", help="ltp, quote or snap_quote")] = "snap_quote",
        receive_path: Annotated[
            str, typer.Option("--receive-path", help="raw, aiohttp, websockets, or all to compare them")
        ] = "raw",
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """The simulator (own process) streams to the feed client (this process) over loopback."""
        from actors.angel.bench import run_decode_bench, run_feed_bench

        if not 1 <= rate <= 1_000_000:
            raise ShardlineError(f"--rate must be 1..1000000 ticks/s, not {rate}")
        if seconds <= 0:
            raise ShardlineError(f"--seconds must be positive, not {seconds}")
        if not 1 <= instruments <= 3000:
            raise ShardlineError(f"--instruments must be 1..3000 (3 sockets × 1000), not {instruments}")
        if mode not in ("ltp", "quote", "snap_quote"):
            raise ShardlineError(f"--mode must be ltp, quote or snap_quote, not {mode!r}")
        if receive_path not in (*RECEIVE_PATHS, "all"):
            raise ShardlineError(
                f"--receive-path must be raw, aiohttp, websockets or all, not {receive_path!r}"
            )
        chosen = RECEIVE_PATHS if receive_path == "all" else (receive_path,)
        result: dict[str, Any] = {
            path: run_feed_bench(rate, seconds, instruments, mode, path)  # type: ignore[arg-type]
            for path in chosen
        }
        if len(chosen) == 1:
            result = result[chosen[0]]
        result["pure_decode"] = run_decode_bench(instruments)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            typer.echo(json.dumps(result, indent=2))
