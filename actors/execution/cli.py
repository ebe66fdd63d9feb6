"""`shardline bench orders`: submit → acknowledgement latency on the paper path, journal included."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("orders")
    def bench_orders(
        orders: Annotated[int, typer.Option(min=1, help="Orders to submit, one after another.")] = 2_000,
        redis_url: Annotated[
            str | None, typer.Option(help="Journal to Redis Streams at this URL instead of files.")
        ] = None,
        with_ray: Annotated[
            bool, typer.Option("--ray", help="Also through the execution actor on a private local Ray.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = True,
    ) -> None:
        """Order submit → acknowledgement (p50/p95/p99) through the engine; with --ray, the actor."""
        from actors.execution.bench import bench_actor, bench_engine

        result: dict[str, object] = {"bench": "orders", "engine": bench_engine(orders, redis_url)}
        if with_ray:
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="shardline")
            try:
                result["actor"] = bench_actor(orders, redis_url)
            finally:
                ray.shutdown()
        typer.echo(json.dumps(result, indent=None if as_json else 2))
