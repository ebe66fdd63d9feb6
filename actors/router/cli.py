"""`shardline bench router`: the tick router's throughput, alone and as an actor feeding shards."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("router")
    def bench_router(
        ticks: Annotated[int, typer.Option(min=1, help="Ticks through the plain router.")] = 2_000_000,
        instruments: Annotated[int, typer.Option(min=1, help="Instruments in each universe.")] = 1_000,
        batch: Annotated[int, typer.Option(min=1, help="Ticks per pushed batch (the feed's flush).")] = 4096,
        shards: Annotated[int, typer.Option(min=1, max=64, help="Shards of the block deployment.")] = 4,
        with_ray: Annotated[
            bool,
            typer.Option("--ray", help="Also run the router actor with shard sinks on a private local Ray."),
        ] = False,
        rate: Annotated[
            float | None, typer.Option(min=1, help="With --ray: pace the feed at this many ticks/s.")
        ] = None,
        seconds: Annotated[float, typer.Option(min=0.1, help="With --ray: how long to push.")] = 10.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = True,
    ) -> None:
        """Ticks/s of TickRouter push+drain; with --ray, sustained rate, loss and push-to-shard latency."""
        from actors.router.bench import bench_actor, bench_plain

        result: dict[str, object] = {
            "bench": "router",
            "plain": bench_plain(ticks, instruments, batch, shards),
        }
        if with_ray:
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="shardline")
            try:
                result["actor"] = bench_actor(rate, seconds, instruments, batch, shards)
            finally:
                ray.shutdown()
        typer.echo(json.dumps(result, indent=None if as_json else 2))
