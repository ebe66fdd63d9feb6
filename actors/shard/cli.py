"""`shardline bench shard`: one strategy on synthetic ticks, on a bare backtest engine and a bare shard."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from actors.shard.baseline import random_walk_ticks, run_backtest, run_bare_shard, run_ray_shard
from actors.shard.universe import ShardInstrument
from actors.ticks import FeedMode

SAMPLE = "actors.shard.strategies.ema_cross:EMACross"


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("shard")
    def bench_shard(
        ticks: Annotated[int, typer.Option(min=1, help="Ticks to feed.")] = 200_000,
        instruments: Annotated[int, typer.Option(min=1, help="Synthetic NSE equities.")] = 40,
        strategy: Annotated[str, typer.Option(help="module.path:ClassName")] = SAMPLE,
        config: Annotated[
            str, typer.Option(help="Strategy config as JSON.")
        ] = '{"fast_period": 10, "slow_period": 30}',
        batch: Annotated[int, typer.Option(min=1, help="Rows per batch handed to the shard.")] = 4096,
        snap_quote: Annotated[bool, typer.Option(help="SNAP_QUOTE rows (trades and quotes).")] = False,
        seed: int = 7,
        rate: Annotated[
            float | None, typer.Option(min=1, help="Pace the feed at this many ticks/s (default: flat out).")
        ] = None,
        with_ray: Annotated[
            bool, typer.Option("--ray", help="Also run the shard as an actor on a private local Ray.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = True,
    ) -> None:
        """Ticks/s of one strategy: bare BacktestEngine, StrategyShard without Ray, (--ray) its actor."""
        try:
            values = json.loads(config)
        except json.JSONDecodeError as err:
            raise typer.BadParameter(f"--config is not JSON: {err}") from None
        universe = [ShardInstrument.equity(i, f"BENCH{i}-EQ", str(10_000 + i)) for i in range(instruments)]
        mode = FeedMode.SNAP_QUOTE if snap_quote else FeedMode.QUOTE
        data = random_walk_ticks(universe, ticks, seed=seed, mode=mode)
        backtest, _ = run_backtest(strategy, values, universe, data)
        shard = run_bare_shard(strategy, values, universe, data, batch_size=batch, rate=rate)
        result = {
            "bench": "shard",
            "ticks": ticks,
            "instruments": instruments,
            "strategy": strategy,
            "rate": rate,
            "backtest": backtest.as_dict(),
            "bare_shard": shard.as_dict(),
            "bare_shard_vs_backtest": round(shard.ticks_per_s / backtest.ticks_per_s, 3)
            if backtest.ticks_per_s
            else None,
        }
        if with_ray:
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="shardline")
            try:
                on_ray = run_ray_shard(strategy, values, universe, data, batch_size=batch, rate=rate)
            finally:
                ray.shutdown()
            result["ray_shard"] = on_ray.as_dict()
            result["ray_vs_bare_shard"] = (
                round(on_ray.ticks_per_s / shard.ticks_per_s, 3) if shard.ticks_per_s else None
            )
        typer.echo(json.dumps(result, indent=None if as_json else 2))
