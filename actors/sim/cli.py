"""`shardline sim` (run the simulator in the foreground) and its benchmarks.

Demo login (from `SimConfig` defaults; change them under `sim:` in config/shardline.yaml):
API key ``sim-api-key``, client code ``SIM001``, PIN ``1234``, TOTP secret
``SHARDLINESIMULATORDEMOTOTPSECRET`` (base32; add it to any authenticator app, or use pyotp).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.config import SimConfig, load_config
from cluster.errors import ShardlineError


def sim_config(config_path: Path | None, **overrides: Any) -> tuple[SimConfig, Any]:
    """The ``sim`` section of the config with command-line overrides applied and validated."""
    config = load_config(config_path)
    changes = {k: v for k, v in overrides.items() if v is not None}
    try:
        sim = SimConfig.model_validate({**config.sim.model_dump(), **changes})
    except ValueError as err:
        raise ShardlineError(f"sim options: {err}") from None
    return sim, config


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @app.command("sim")
    def sim_command(
        rate: Annotated[
            int | None, typer.Option("--rate", help="ticks per second across subscribed instruments")
        ] = None,
        instruments: Annotated[
            int | None, typer.Option("--instruments", help="how many instruments to quote")
        ] = None,
        rest_port: Annotated[
            int | None, typer.Option("--rest-port", help="REST port (0 = free port)")
        ] = None,
        stream_port: Annotated[int | None, typer.Option("--stream-port", help="SmartStream port")] = None,
        order_port: Annotated[
            int | None, typer.Option("--order-port", help="order-update socket port")
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="random seed of the market")] = None,
        replay: Annotated[
            Path | None, typer.Option("--replay", help="Parquet file of recorded ticks to play")
        ] = None,
        session_hours: Annotated[
            bool | None,
            typer.Option("--session-hours/--always-open", help="refuse orders outside 09:15-15:30 IST"),
        ] = None,
        no_rate_limits: Annotated[
            bool, typer.Option("--no-rate-limits", help="do not enforce Angel's limits")
        ] = False,
        config_path: Annotated[Path | None, typer.Option("--config", help="config file")] = None,
    ) -> None:
        """Run the local Angel One simulator (REST, SmartStream V2, order updates) until Ctrl-C."""
        if replay is not None and not replay.is_file():
            raise ShardlineError(f"--replay {replay}: no such file")
        sim, config = sim_config(
            config_path,
            tick_rate=rate,
            instruments=instruments,
            rest_port=rest_port,
            stream_port=stream_port,
            order_port=order_port,
            seed=seed,
            replay_path=str(replay) if replay else None,
            session_hours=session_hours,
            enforce_rate_limits=False if no_rate_limits else None,
        )
        asyncio.run(_serve_forever(sim, config))

    @bench_app.command("sim-stream")
    def bench_sim_stream(
        rate: Annotated[int, typer.Option("--rate", help="target ticks per second")] = 100_000,
        seconds: Annotated[float, typer.Option("--seconds", help="how long to measure")] = 10.0,
        instruments: Annotated[int, typer.Option("--instruments")] = 1000,
        mode: Annotated[int, typer.Option("--mode", help="1 LTP, 2 QUOTE, 3 SNAP_QUOTE")] = 3,
        connections: Annotated[int, typer.Option("--connections", help="1 to 3 sockets")] = 1,
        client: Annotated[
            str, typer.Option("--client", help="bulk (numpy frame split) or aiohttp (one await per message)")
        ] = "bulk",
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Simulator feed throughput over loopback: a separate server process, the client here."""
        from actors.sim.bench import run_stream_bench

        if mode not in (1, 2, 3) or not 1 <= connections <= 3 or rate < 1 or seconds <= 0:
            raise ShardlineError("--mode must be 1-3, --connections 1-3, --rate >= 1 and --seconds > 0")
        if client not in ("bulk", "aiohttp"):
            raise ShardlineError(f"--client must be bulk or aiohttp, not {client!r}")
        result = run_stream_bench(rate, seconds, instruments, mode, connections, client)
        _print(result, as_json)

    @bench_app.command("sim-send-paths")
    def bench_send_paths(
        messages: Annotated[int, typer.Option("--messages", help="packets per path")] = 200_000,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Server send paths compared: aiohttp and websockets one message per call, and bulk frames."""
        from actors.sim.bench import run_send_path_bench

        if messages < 1:
            raise ShardlineError("--messages must be at least 1")
        _print(run_send_path_bench(messages), as_json)


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key:>28}: {value}")


async def _serve_forever(sim: SimConfig, config: Any) -> None:
    from actors.sim.server import SimServer, build_instruments

    try:
        instruments = build_instruments(sim, config)
    except ValueError as err:
        raise ShardlineError(str(err)) from None
    server = SimServer(sim, instruments)
    try:
        await server.start()
    except OSError as err:
        raise ShardlineError(f"cannot bind the simulator's ports: {err.strerror or err}") from None
    typer.echo(
        f"Angel One simulator: {len(instruments)} instruments, {sim.tick_rate} ticks/s, seed {sim.seed}"
    )
    typer.echo(f"  REST           {server.rest_url}")
    typer.echo(f"  SmartStream    {server.stream_url}")
    typer.echo(f"  order updates  {server.order_url}")
    typer.echo(
        f"  login          api key {sim.api_key}, client code {sim.client_code}, PIN {sim.pin}, "
        f"TOTP secret {sim.totp_secret} (now {server.totp()})"
    )
    typer.echo("Ctrl-C to stop.")
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
